package tracker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/anacrolix/torrent/metainfo"

	"racktracker/storage"
)

// maxTorrentSize bounds an upload, which is held in memory and stored in
// Redis whole. A .torrent holds 20 bytes per piece: 16 MiB is over 800,000
// pieces, far beyond any payload this tracker serves.
const maxTorrentSize = 16 << 20

// readUpload reads the .torrent of a registration: the multipart field
// "torrent" when the body is a form, else the raw body. On error it returns
// the status to answer with.
func readUpload(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTorrentSize)
	var body io.Reader = r.Body
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("bad multipart form: %w", err)
		}
		for body = nil; body == nil; {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil, http.StatusBadRequest, errors.New(`multipart form has no field "torrent"`)
			}
			if err != nil {
				status, err := uploadError("bad multipart form", err)
				return nil, status, err
			}
			if p.FormName() == "torrent" {
				body = p
			}
		}
	}
	b, err := io.ReadAll(body)
	if err != nil {
		status, err := uploadError("reading the upload", err)
		return nil, status, err
	}
	if len(b) == 0 {
		return nil, http.StatusBadRequest, errors.New(`empty upload: send the .torrent as the request body or as the multipart field "torrent"`)
	}
	return b, 0, nil
}

// uploadError is the status and reason for an upload that could not be
// read: too large, or cut short.
func uploadError(doing string, err error) (int, error) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("upload larger than %d MiB: no .torrent is that large", maxTorrentSize>>20)
	}
	return http.StatusBadRequest, fmt.Errorf("%s: %w", doing, err)
}

// torrentMeta is what registration takes from a .torrent.
type torrentMeta struct {
	hash   storage.InfoHash
	name   string
	length int64
}

// parseTorrent checks that b is a .torrent a BitTorrent client could use
// with this tracker, and returns its v1 info hash, name and length.
func parseTorrent(b []byte) (torrentMeta, error) {
	// The decoder only sees what scanTorrent accepted.
	if err := scanTorrent(b); err != nil {
		return torrentMeta{}, err
	}
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		return torrentMeta{}, err
	}
	if len(mi.InfoBytes) == 0 {
		return torrentMeta{}, errors.New("no info dictionary")
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return torrentMeta{}, fmt.Errorf("info dictionary: %w", err)
	}
	if !info.HasV1() {
		// Clients announce a v2-only torrent under a truncated SHA-256,
		// which is not the SHA-1 this tracker keys transfers by.
		return torrentMeta{}, errors.New("a v2-only torrent (BEP 52) has no v1 info hash; make a v1 or hybrid torrent")
	}
	if info.PieceLength <= 0 {
		return torrentMeta{}, fmt.Errorf("piece length %d", info.PieceLength)
	}
	length := info.TotalLength()
	if length < 0 {
		return torrentMeta{}, fmt.Errorf("negative length %d", length)
	}
	if len(info.Pieces)%20 != 0 {
		return torrentMeta{}, fmt.Errorf("pieces is %d bytes, not a multiple of 20", len(info.Pieces))
	}
	if !info.HasV2() {
		// Hybrid torrents pad files to pieces; their v1 count is theirs.
		if want := (length + info.PieceLength - 1) / info.PieceLength; int64(len(info.Pieces)/20) != want {
			return torrentMeta{}, fmt.Errorf("%d piece hashes for %d bytes in pieces of %d, want %d", len(info.Pieces)/20, length, info.PieceLength, want)
		}
	}
	name := info.BestName()
	if name == "" {
		return torrentMeta{}, errors.New("info dictionary has no name")
	}
	return torrentMeta{hash: storage.InfoHash(mi.HashInfoBytes()), name: name, length: length}, nil
}
