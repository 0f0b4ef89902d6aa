//go:build race

package core_test

// raceEnabled relaxes allocation checks under the race detector, which
// allocates on its own account.
const raceEnabled = true
