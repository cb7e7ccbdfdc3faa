package typefilter

import "testing"

// Clone gives an equal set that shares nothing with the original; nil
// (every type) stays nil.
func TestClone(t *testing.T) {
	if Set(nil).Clone() != nil {
		t.Fatal("the clone of nil (every type) is not nil")
	}
	ts, err := Parse([]string{"upload-progress,chapter-update-complete"})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.Clone()
	if len(c) != 2 || !c.Has("upload-progress") || !c.Has("chapter-update-complete") || c.Has("video-delete-complete") {
		t.Fatalf("clone %v of %v", c, ts)
	}
	c["video-delete-complete"] = struct{}{}
	if ts.Has("video-delete-complete") {
		t.Fatal("the clone shares its map with the original")
	}
}
