package media

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Probe describes the media in r, whose size is size bytes. The format is
// detected from the bytes: an ISO BMFF box header at offset 0 means MP4,
// M4A or fMP4; an ID3v2 tag or an MPEG audio frame followed by another
// means MP3. Anything else is ErrUnknownFormat.
//
// For MP4 it reads the top-level box headers, the ftyp, the moov and every
// moof, never an mdat payload. For MP3 it reads the file once, sequentially.
// Errors wrap ErrUnknownFormat, ErrTruncated, ErrMalformed or ErrTooLarge,
// or are I/O errors from r.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes is too short for any media file", ErrUnknownFormat, size)
	}
	var b [8]byte
	if err := readFull(r, b[:], 0, "file start"); err != nil {
		return nil, err
	}
	if isTopLevelType(binary.BigEndian.Uint32(b[4:])) {
		return probeMP4(r, size)
	}
	return probeMP3(r, size)
}

// ProbeFile is Probe on the regular file at path.
func ProbeFile(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	return Probe(f, st.Size())
}
