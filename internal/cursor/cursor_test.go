package cursor

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseCourses(t *testing.T) {
	ids, err := ParseCourses([]string{"b,a", "b,c:1"})
	if err != nil || strings.Join(ids, " ") != "b a c:1" {
		t.Fatalf("ParseCourses = %q, %v; want [b a c:1]", ids, err)
	}
	var max []string
	for i := range MaxCourses {
		max = append(max, fmt.Sprintf("c%d", i))
	}
	if ids, err := ParseCourses([]string{strings.Join(max, ",") + ",c0"}); err != nil || len(ids) != MaxCourses {
		t.Fatalf("64 courses and a repeat: %d, %v", len(ids), err)
	}
	for _, bad := range [][]string{nil, {""}, {"a,"}, {",a"}, {"a b"}, {"-a"}, {strings.Join(max, ",") + ",c64"}} {
		if _, err := ParseCourses(bad); !errors.Is(err, ErrCourses) {
			t.Errorf("ParseCourses(%q) = %v, want ErrCourses", bad, err)
		}
	}
}

func TestParseAndFormat(t *testing.T) {
	ps, err := Parse("course-a:5,ns:course:b:0,x:18446744073709551615")
	if err != nil {
		t.Fatal(err)
	}
	if ps["course-a"] != 5 || ps["ns:course:b"] != 0 || ps["x"] != 1<<64-1 || len(ps) != 3 {
		t.Fatalf("Parse = %v", ps)
	}
	c := New([]string{"ns:course:b", "new", "course-a"}, ps)
	if got := c.String(); got != "ns:course:b:0,new:0,course-a:5" {
		t.Fatalf("String = %q", got)
	}
	if c.Index("new") != 1 || c.Index("x") != -1 {
		t.Fatal("Index")
	}
	if ps, err := Parse(""); err != nil || len(ps) != 0 {
		t.Fatalf("Parse(\"\") = %v, %v", ps, err)
	}
}

func TestParseMalformed(t *testing.T) {
	for _, bad := range []string{
		"a", "a:", ":1", "a:1,", ",a:1", "a:1,,b:2", "a:-1", "a:+1", "a:1.0", "a: 1",
		"a:18446744073709551616", "a:1,a:2", "-a:1", "a b:1", strings.Repeat("a:1,", maxText/4+1),
	} {
		if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.40q) = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzParse: whatever the text, Parse does not panic, and a cursor it
// accepts prints back to a text that parses to the same positions.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a:1", "a:1,b:2", "a:b:3", "a:1,a:2", "a:", ":", ",", "a:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q): %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		courses := make([]string, 0, len(ps))
		for id := range ps {
			courses = append(courses, id)
		}
		again, err := Parse(New(courses, ps).String())
		if err != nil || len(again) != len(ps) {
			t.Fatalf("Parse(%q) = %v; printed and parsed again: %v, %v", s, ps, again, err)
		}
		for id, seq := range ps {
			if again[id] != seq {
				t.Fatalf("course %s: %d, then %d", id, seq, again[id])
			}
		}
	})
}
