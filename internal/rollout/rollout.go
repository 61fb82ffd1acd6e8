// Package rollout computes the figures that the lab (e2e's TestLab, real
// clients) and the simulator (cmd/rtsim) report of one rollout, so that the
// two measure the same thing: the payload copies that entered the leecher
// racks, and when the hosts completed.
package rollout

import "slices"

// MeanCopies is the mean over racks of the payload copies that entered
// each; NaN without racks.
func MeanCopies(copies []float64) float64 {
	var s float64
	for _, c := range copies {
		s += c
	}
	return s / float64(len(copies))
}

// Times reads the completions of a rollout: done[i] is when host i
// completed, rack[i] its rack. last is the last completion, median the
// median one, and spread how long after the first rack to complete (its
// last host) the last rack did. ok is false, and the rest zero, without a
// completion.
func Times[T ~int64 | ~float64](done []T, rack []int) (last, median, spread T, ok bool) {
	if len(done) == 0 {
		return 0, 0, 0, false
	}
	d := slices.Sorted(slices.Values(done))
	rackLast := map[int]T{}
	for i, v := range done {
		rackLast[rack[i]] = max(rackLast[rack[i]], v)
	}
	first := d[len(d)-1]
	for _, v := range rackLast {
		first = min(first, v)
	}
	return d[len(d)-1], d[len(d)/2], d[len(d)-1] - first, true
}
