package tracker

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"racktracker/storage"
)

// BenchmarkAnnounceHandler measures the whole announce path (query parsing,
// rack lookup, the storage script on the embedded store, the handout,
// bencoding) through the HTTP handler, for 1000 hosts over 4 racks.
// BenchmarkHealthz, one storage round trip through the same handler, is the
// baseline to divide by.
func BenchmarkAnnounceHandler(b *testing.B) {
	r := newRig(b, storage.BackendEmbedded, nil)
	h := r.srv.Handler()
	reqs := make([]*http.Request, 1000)
	for i := range reqs {
		p := params{hash: ih(0xc1), port: 6881, left: int64(1000 - i%3)}
		if i%10 == 0 {
			p.left = 0
		}
		req := httptest.NewRequest(http.MethodGet, "/announce?"+p.query(), nil)
		req.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(1 + i%4), byte(i)}), 40000).String()
		reqs[i] = req
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.Code != 200 || w.Body.Len() == 0 {
			b.Fatalf("status %d", w.Code)
		}
		i++
	}
}

// BenchmarkHealthz is the baseline of BenchmarkAnnounceHandler: the same
// handler, one PING to the same store.
func BenchmarkHealthz(b *testing.B) {
	r := newRig(b, storage.BackendEmbedded, nil)
	h := r.srv.Handler()
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
