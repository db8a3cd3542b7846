package media

import (
	"encoding/binary"
	"io"
)

// id3v2Tag is the decoded 10-byte header of an ID3v2 tag.
type id3v2Tag struct {
	major, revision, flags byte
	size                   int64 // tag body, excluding header and footer
	footer                 bool
}

// total is the whole tag on disk: header, body and footer if flagged.
func (t id3v2Tag) total() int64 {
	n := 10 + t.size
	if t.footer {
		n += 10
	}
	return n
}

// parseID3v2 decodes an ID3v2 header ("ID3", version, flags, 28-bit
// syncsafe size) or, with magic "3DI", the footer of an ID3v2.4 tag. ok is
// false when b does not hold a valid one.
func parseID3v2(b []byte, magic string) (t id3v2Tag, ok bool) {
	if len(b) < 10 || string(b[:3]) != magic {
		return t, false
	}
	t.major, t.revision, t.flags = b[3], b[4], b[5]
	if t.major < 2 || t.major > 4 || t.revision == 0xff {
		return t, false
	}
	if b[6]|b[7]|b[8]|b[9] >= 0x80 {
		return t, false
	}
	t.size = int64(b[6])<<21 | int64(b[7])<<14 | int64(b[8])<<7 | int64(b[9])
	t.footer = t.major == 4 && t.flags&0x10 != 0
	return t, true
}

// trailingTags finds the tags at the end of an MP3 file, below end and not
// below start: ID3v1 (and its Enhanced "TAG+" extension), APEv2, Lyrics3v2
// and an appended ID3v2.4 tag with a footer. It returns where the audio
// ends.
func trailingTags(r io.ReaderAt, start, end int64) (audioEnd int64, id3v1 bool, err error) {
	var b [227]byte
	for range 16 { // each pass strips one tag; real files carry a few
		changed := false
		if end-start >= 128 {
			if err := readFull(r, b[:128], end-128, "ID3v1 tag"); err != nil {
				return 0, false, err
			}
			if string(b[:3]) == "TAG" {
				end -= 128
				id3v1, changed = true, true
				if end-start >= 227 {
					if err := readFull(r, b[:4], end-227, "Enhanced ID3 tag"); err != nil {
						return 0, false, err
					}
					if string(b[:4]) == "TAG+" {
						end -= 227
					}
				}
			}
		}
		if end-start >= 32 {
			if err := readFull(r, b[:32], end-32, "APE tag footer"); err != nil {
				return 0, false, err
			}
			if string(b[:8]) == "APETAGEX" {
				size := int64(binary.LittleEndian.Uint32(b[12:]))
				flags := binary.LittleEndian.Uint32(b[20:])
				if flags&(1<<31) != 0 {
					size += 32
				}
				if size >= 32 && size <= end-start {
					end -= size
					changed = true
				}
			}
		}
		if end-start >= 15 {
			if err := readFull(r, b[:15], end-15, "Lyrics3 tag"); err != nil {
				return 0, false, err
			}
			if string(b[6:15]) == "LYRICS200" {
				size := int64(0)
				digits := true
				for _, c := range b[:6] {
					if c < '0' || c > '9' {
						digits = false
					}
					size = size*10 + int64(c-'0')
				}
				if digits && size+15 <= end-start {
					end -= size + 15
					changed = true
				}
			}
		}
		if end-start >= 20 {
			if err := readFull(r, b[:10], end-10, "ID3v2 footer"); err != nil {
				return 0, false, err
			}
			if t, ok := parseID3v2(b[:10], "3DI"); ok && t.size+20 <= end-start {
				if err := readFull(r, b[:10], end-t.size-20, "ID3v2 header"); err != nil {
					return 0, false, err
				}
				if _, ok := parseID3v2(b[:10], "ID3"); ok {
					end -= t.size + 20
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	return end, id3v1, nil
}
