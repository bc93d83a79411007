package shutdown_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(clientsEnv); spec != "" {
		os.Exit(runClients(spec)) // a benchmark's clients (scale_test.go)
	}
	// The hub of gorilla's chat example runs for good, as in the example.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/wsshutdown/wsshutdown/internal/thirdparty/shutdown_test.(*chatHub).run"))
}
