package shutdown_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The hub of gorilla's chat example runs for good, as in the example.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/wsshutdown/wsshutdown/internal/thirdparty/shutdown_test.(*chatHub).run"))
}
