package redistest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// proxy's copiers and the servers' log readers end with their owners.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
