package shutdown_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every Go block in README.md is compiled code: it stands, but for
// indentation, in a test or Example file of this repository, in this
// module or in internal/thirdparty's.
func TestREADMECodeIsCompiled(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d Go blocks; this test expects the usage and the recipes", len(blocks))
	}
	var files []string
	for _, pattern := range []string{"../*/*_test.go", "../internal/thirdparty/*/*_test.go"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	var sources strings.Builder
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources.WriteString(normalize(string(src)))
		sources.WriteString("\n")
	}
	for _, b := range blocks {
		if !strings.Contains(sources.String(), normalize(string(b[1]))) {
			t.Errorf("this README block is in no test or Example file, so nothing compiles it:\n%s", b[1])
		}
	}
}

// normalize drops indentation and blank lines.
func normalize(src string) string {
	var lines []string
	for _, l := range strings.Split(src, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
