//go:build !linux && !darwin

package main

// raiseNoFile does nothing here: the descriptor limit is the system's (on
// a BSD, raise it with ulimit -n before a large conns run).
func raiseNoFile(int) error { return nil }
