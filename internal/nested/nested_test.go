package nested

import (
	"bufio"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// root is the repository's top, from this package's directory.
const root = "../.."

// TestNestedModules runs go test ./... in every nested module of go.work,
// with the flags this test binary was given that apply to them: -race
// (from how this binary was built), -short, -count and -v. The modules run
// one after the other, each with -p 1: on two cores, two of their test
// binaries at once would make each slower than it tests for.
func TestNestedModules(t *testing.T) {
	args := []string{"test", "-p", "1"}
	if race {
		args = append(args, "-race")
	}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "test.short", "test.count", "test.v":
			args = append(args, "-"+strings.TrimPrefix(f.Name, "test.")+"="+f.Value.String())
		}
	})
	if deadline, ok := t.Deadline(); ok {
		args = append(args, "-timeout", time.Until(deadline).Round(time.Second).String())
	}
	args = append(args, "./...")
	goCmd := goCommand()
	for _, dir := range nestedModules(t) {
		noteInputs(t, append(rootModule(), filepath.Join(root, dir))...)
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = filepath.Join(root, dir)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		t.Logf("%s: go %s", dir, strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: go test: %v", dir, err)
		}
	}
}

// goCommand is the go command that runs this test.
func goCommand() string {
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		return filepath.Join(goroot, "bin", "go")
	}
	return "go"
}

// nestedModules returns the directories that go.work uses, but the root.
func nestedModules(t *testing.T) []string {
	f, err := os.Open(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dirs []string
	inUse := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "" && line != ".":
			dirs = append(dirs, filepath.Clean(line))
		}
	}
	if len(dirs) == 0 {
		t.Fatal("go.work uses no nested module")
	}
	return dirs
}

// rootModule is what the root module's importers build, and its go.mod.
func rootModule() []string {
	return []string{
		filepath.Join(root, "go.mod"),
		filepath.Join(root, "shutdown"),
		filepath.Join(root, "fxshutdown"),
		filepath.Join(root, "internal", "drainsignal"),
	}
}

// noteInputs reads every file in the trees of paths, and the environment
// the nested tests read, so that go test's cache, which records what a
// test opens, reruns this test when any of them changes.
func noteInputs(t *testing.T, paths ...string) {
	for _, env := range []string{"WSSHUTDOWN_REQUIRE_BROWSER", "WSSHUTDOWN_REQUIRE_HAPROXY", "WSSHUTDOWN_SCREENSHOT", "PATH"} {
		os.Getenv(env)
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
