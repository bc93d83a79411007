//go:build !race

package shutdown_test

// raceEnabled reports whether the race detector is on: it changes what
// allocates.
const raceEnabled = false
