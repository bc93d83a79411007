//go:build !race

package nested

const race = false
