//go:build !race

package e2e

// linkScale is 1 without the race detector; see race_test.go.
const linkScale = 1
