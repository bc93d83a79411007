package nested

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImportersGoSum builds a fresh module that imports one package of
// the root and counts the modules other than the root's that go mod tidy
// puts in its go.sum: none for shutdown, which imports the standard
// library only, and for fxshutdown at most what fx, zap and the
// OpenTelemetry metric API bring themselves.
func TestImportersGoSum(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy and go build in a new module")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	noteInputs(t, rootModule()...)
	for _, tc := range []struct {
		pkg  string
		most int
	}{
		{"github.com/wsshutdown/wsshutdown/shutdown", 0},
		{"github.com/wsshutdown/wsshutdown/fxshutdown", 18},
	} {
		t.Run(filepath.Base(tc.pkg), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "go.mod"), "module example.com/importer\n\ngo 1.25.0\n\n"+
				"require github.com/wsshutdown/wsshutdown v0.0.0\n\n"+
				"replace github.com/wsshutdown/wsshutdown => "+abs+"\n")
			write(t, filepath.Join(dir, "main.go"), "package main\n\nimport _ \""+tc.pkg+"\"\n\nfunc main() {}\n")
			run(t, dir, "mod", "tidy")
			run(t, dir, "build", "./...")
			sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			var mods []string
			for _, line := range strings.Split(string(sum), "\n") {
				if f := strings.Fields(line); len(f) > 0 && !slices.Contains(mods, f[0]) {
					mods = append(mods, f[0])
				}
			}
			t.Logf("%d modules in the go.sum of a module importing %s: %v", len(mods), tc.pkg, mods)
			if len(mods) > tc.most {
				t.Errorf("%d modules in an importer's go.sum, want at most %d: %v", len(mods), tc.most, mods)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs the go command in dir, outside the workspace, as an importer
// would.
func run(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(goCommand(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
