package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestCheckCourses(t *testing.T) {
	t.Parallel()
	a := New(key, nil)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	two := sign(t, jwt.SigningMethodHS256, key, claims([]string{"c1", "c2"}, nil, exp))
	all := sign(t, jwt.SigningMethodHS256, key, claims([]string{"*"}, nil, time.Time{}))
	publisher := sign(t, jwt.SigningMethodHS256, key, claims(nil, []string{"c1"}, exp))
	expired := sign(t, jwt.SigningMethodHS256, key, claims([]string{"*"}, nil, time.Now().Add(-time.Second)))

	for _, tc := range []struct {
		name        string
		tok         string
		courses     []string
		access      Access
		want        error
		wantRefused string
		wantExpiry  time.Time
	}{
		{"every course allowed", two, []string{"c2", "c1"}, Subscribe, nil, "", exp},
		{"wildcard, no expiry", all, []string{"c1", "c9"}, Subscribe, nil, "", time.Time{}},
		{"the first refused is named", two, []string{"c1", "c3", "c4"}, Subscribe, ErrForbidden, "c3", time.Time{}},
		{"publish claim is not a courses claim", publisher, []string{"c1"}, Subscribe, ErrForbidden, "c1", time.Time{}},
		{"publish access reads the publish claim", publisher, []string{"c1"}, Publish, nil, "", exp},
		{"no token", "", []string{"c1"}, Subscribe, ErrUnauthorized, "", time.Time{}},
		{"expired", expired, []string{"c1"}, Subscribe, ErrUnauthorized, "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
			if tc.tok != "" {
				r.Header.Set("Authorization", "Bearer "+tc.tok)
			}
			expiry, refused, err := a.CheckCourses(r, tc.courses, tc.access)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if refused != tc.wantRefused {
				t.Errorf("refused = %q, want %q", refused, tc.wantRefused)
			}
			if refused != "" && !strings.Contains(err.Error(), refused) {
				t.Errorf("the error %q does not name %s", err, refused)
			}
			if !expiry.Equal(tc.wantExpiry) {
				t.Errorf("expiry = %v, want %v", expiry, tc.wantExpiry)
			}
		})
	}
}
