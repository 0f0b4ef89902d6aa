//go:build race

package topic

// raceEnabled relaxes timing assertions under the race detector, which slows
// the code it instruments several times over.
const raceEnabled = true
