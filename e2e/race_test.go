//go:build race

package e2e

// linkScale slows TestCrossRackTraffic's network under the race detector.
// Instrumented clients are CPU-bound on two cores at the full rates, and a
// network whose links never fill measures the scheduler instead of the
// handout; a quarter of the rates keeps the links the bottleneck.
const linkScale = 4
