package poller

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"coursestream/internal/cursor"
)

// ETag returns the weak entity tag of a course at lastID:
// W/"<courseId>:<lastEventId>". Weak because the body varies with ?after=
// and ?types=, and proxies that compress keep weak tags.
func ETag(courseID string, lastID uint64) string {
	b := make([]byte, 0, len(courseID)+26)
	b = append(b, `W/"`...)
	b = append(b, courseID...)
	b = append(b, ':')
	b = strconv.AppendUint(b, lastID, 10)
	return string(append(b, '"'))
}

// CursorETag returns the weak entity tag of a multi-course poll whose
// answer's cursor is c: W/"<32 hex digits>", the first 128 bits of the
// SHA-256 of the cursor text. A function of the cursor alone (so of the
// course order too), of a fixed length however many courses there are.
func CursorETag(c cursor.Cursor) string {
	var text [1024]byte
	sum := sha256.Sum256(c.Append(text[:0]))
	b := make([]byte, 0, 3+2*16+1)
	b = append(b, `W/"`...)
	b = hex.AppendEncode(b, sum[:16])
	return string(append(b, '"'))
}

// MatchNoneMatch reports whether an If-None-Match header value matches
// etag by weak comparison (RFC 9110 13.1.2): "*", or any tag of the list
// whose opaque part equals etag's, with or without W/. A malformed list
// matches nothing from the first bad tag on.
func MatchNoneMatch(header, etag string) bool {
	want := opaque(etag)
	for {
		header = strings.TrimLeft(header, " \t,")
		if header == "" {
			return false
		}
		if header[0] == '*' {
			return true
		}
		tag, rest, ok := scanETag(header)
		if !ok {
			return false
		}
		if opaque(tag) == want {
			return true
		}
		header = rest
	}
}

// scanETag reads one entity tag from the start of s (after optional
// whitespace is already removed) and returns it and what follows.
func scanETag(s string) (tag, rest string, ok bool) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s) <= start || s[start] != '"' {
		return "", "", false
	}
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return s[:i+1], s[i+1:], true
		case c == 0x21 || (c >= 0x23 && c <= 0x7E) || c >= 0x80:
			// etagc
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// opaque strips the weakness indicator.
func opaque(tag string) string { return strings.TrimPrefix(tag, "W/") }
