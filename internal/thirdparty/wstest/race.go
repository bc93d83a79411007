//go:build race

package wstest

// Race reports whether the race detector is on: it changes what allocates,
// and makes closing connections about three times slower.
const Race = true
