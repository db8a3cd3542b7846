#!/bin/sh
# make-fixtures.sh — makes the media fixtures that media/ tests against, and
# ffprobe.json, what ffprobe says about each good one.
#
# Needs ffmpeg and ffprobe (with libx264, aac and libmp3lame: the Debian
# package has them), python3 (to hand-craft the tags and headers ffmpeg
# cannot write), head and dd. Run it from anywhere; it writes next to itself.
# The outputs are committed, so the tests never need ffmpeg.
#
# Good fixtures (each under 200 KB):
#   mp4-faststart.mp4   H.264 + AAC stereo, moov before mdat (-movflags +faststart)
#   mp4-moovend.mp4     the same, moov after mdat (ffmpeg's default)
#   fmp4.mp4            fragmented: frag_keyframe+empty_moov+default_base_moof, 1 s fragments
#   m4a-faststart.m4a   AAC only (mono, like every fixture without -ac 2), moov first
#   m4a-moovend.m4a     AAC only, moov last
#   m4a-frag.m4a        AAC only, fragmented, 1 s fragments
#   mp3-cbr128.mp3      CBR 128k 44.1 kHz stereo; ID3v2.4 tag and a LAME "Info" frame
#   mp3-vbr-q4.mp3      VBR -q:a 4; ID3v2.4 tag and a "Xing" frame
#   mp3-mono22k-64k.mp3 MPEG-2 Layer III, 22.05 kHz mono CBR 64k
#   mp3-id3v1.mp3       ID3v2.3 tag at the start, 128-byte ID3v1 "TAG" at the end
#   mp3-bare.mp3        frames only: no tag, no Xing frame (VBR -q:a 4)
#   mp3-vbri.mp3        a hand-made Fraunhofer "VBRI" frame before the frames of mp3-bare
#   mp3-id3footer.mp3   a hand-made ID3v2.4 tag with the footer flag (and footer) before
#                       the frames of mp3-bare, and another such tag appended, then an
#                       APEv2 tag and an ID3v1 tag at the end
#
# Seed fixtures (seed-*, a few KB: 0.4 s, 32x32 video, 8 kHz audio) seed the
# fuzz corpora in media/testdata/fuzz (go test ./media -run TestFuzzSeeds
# -update-fuzz-seeds rewrites them); ffprobe.json leaves them out.
#
# Bad fixtures (bad-*): cut short with head, corrupted with dd, or hand-made;
# media.Probe must reject each with an error and a reason.
set -eu
cd "$(dirname "$0")"

ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

D=5
VIDEO="-f lavfi -i testsrc=size=320x240:rate=25:duration=$D"
SINE="-f lavfi -i sine=frequency=440:sample_rate=44100:duration=$D"
VENC="-c:v libx264 -pix_fmt yuv420p -preset veryfast -b:v 120k -g 25"
FRAG="-movflags frag_keyframe+empty_moov+default_base_moof"

rm -f ./*.mp4 ./*.m4a ./*.mp3 ./*.bin
ff $VIDEO $SINE $VENC -c:a aac -b:a 48k -ac 2 -movflags +faststart mp4-faststart.mp4
ff $VIDEO $SINE $VENC -c:a aac -b:a 48k -ac 2 mp4-moovend.mp4
ff $VIDEO $SINE $VENC -c:a aac -b:a 48k -ac 2 $FRAG fmp4.mp4
ff $SINE -c:a aac -b:a 64k -movflags +faststart m4a-faststart.m4a
ff $SINE -c:a aac -b:a 64k m4a-moovend.m4a
ff $SINE -c:a aac -b:a 64k $FRAG -frag_duration 1000000 m4a-frag.m4a
ff $SINE -c:a libmp3lame -b:a 128k -ac 2 mp3-cbr128.mp3
ff $SINE -c:a libmp3lame -q:a 4 mp3-vbr-q4.mp3
ff -f lavfi -i sine=frequency=440:sample_rate=22050:duration=$D -c:a libmp3lame -b:a 64k -ac 1 mp3-mono22k-64k.mp3
ff $SINE -c:a libmp3lame -b:a 96k -id3v2_version 3 -write_id3v1 1 -metadata title=castmesh mp3-id3v1.mp3
ff $SINE -c:a libmp3lame -q:a 4 -id3v2_version 0 -write_xing 0 mp3-bare.mp3

TINYV="-f lavfi -i testsrc=size=32x32:rate=10:duration=0.4"
TINYA="-f lavfi -i sine=frequency=440:sample_rate=8000:duration=0.4"
TINYENC="-c:v libx264 -pix_fmt yuv420p -g 2 -b:v 20k -c:a aac -b:a 8k"
ff $TINYV $TINYA $TINYENC -movflags +faststart seed-faststart.mp4
ff $TINYV $TINYA $TINYENC seed-moovend.mp4
ff $TINYV $TINYA $TINYENC $FRAG seed-fmp4.mp4
ff $TINYA -c:a aac -b:a 8k $FRAG -frag_duration 200000 seed-frag.m4a
ff $TINYA -c:a libmp3lame -b:a 8k seed-cbr.mp3
ff $TINYA -c:a libmp3lame -q:a 9 seed-vbr.mp3

python3 - <<'EOF'
import struct

def syncsafe(n):
    return bytes([(n >> 21) & 0x7f, (n >> 14) & 0x7f, (n >> 7) & 0x7f, n & 0x7f])

def id3v24_with_footer(title):
    text = b"\x03" + title.encode()
    frame = b"TIT2" + syncsafe(len(text)) + b"\x00\x00" + text
    return (b"ID3\x04\x00\x10" + syncsafe(len(frame)) + frame +
            b"3DI\x04\x00\x10" + syncsafe(len(frame)))

bare = open("mp3-bare.mp3", "rb").read()

# An MPEG-1 Layer III 44.1 kHz frame at 128 kbit/s (417 bytes) holding a
# VBRI header 32 bytes after the frame header, as Fraunhofer encoders write.
frames, pos = 0, 0
while pos < len(bare):
    h = struct.unpack(">I", bare[pos:pos + 4])[0]
    br = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320][(h >> 12) & 15] * 1000
    pos += 144 * br // 44100 + ((h >> 9) & 1)
    frames += 1
assert pos == len(bare), "mp3-bare.mp3 is not a clean 44.1 kHz MPEG-1 Layer III stream"
vbri = bytearray(417)
vbri[0:4] = b"\xff\xfb\x90\xc4"  # mono, like the frames that follow
tag = b"VBRI" + struct.pack(">HHHIIHHHH", 1, 1105, 75, len(bare) + 417, frames, 0, 1, 2, 0)
vbri[36:36 + len(tag)] = tag
assert len(vbri) == 417
open("mp3-vbri.mp3", "wb").write(bytes(vbri) + bare)

ape_items = b""
item = b"castmesh"
ape_items += struct.pack("<II", len(item), 0) + b"Title\x00" + item
ape_size = len(ape_items) + 32
ape = (b"APETAGEX" + struct.pack("<IIII", 2000, ape_size, 1, 0x80000000 | 0x20000000) + b"\x00" * 8 +
       ape_items +
       b"APETAGEX" + struct.pack("<IIII", 2000, ape_size, 1, 0x80000000) + b"\x00" * 8)
id3v1 = (b"TAG" + b"castmesh".ljust(30, b"\x00") + b"\x00" * 30 + b"\x00" * 30 + b"2026" +
         b"\x00" * 30 + b"\xff")
assert len(id3v1) == 128
open("mp3-id3footer.mp3", "wb").write(
    id3v24_with_footer("castmesh leading tag") + bare +
    id3v24_with_footer("castmesh appended tag") + ape + id3v1)

# 1 KB: an ftyp, then a box whose 64-bit size claims 1 TB.
ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
huge = struct.pack(">I4sQ", 1, b"mdat", 1 << 40)
open("bad-mp4-1tb-box.mp4", "wb").write((ftyp + huge).ljust(1024, b"\x00"))

# 4 KB of deterministic noise.
import random
random.seed(3)
open("bad-random.bin", "wb").write(bytes(random.getrandbits(8) for _ in range(4096)))
EOF

# offset of the first box of type $2 in file $1 (grep finds the type; the
# box starts 4 bytes earlier)
box_offset() { echo $(( $(grep -obUa "$2" "$1" | head -1 | cut -d: -f1) - 4 )); }
size_of() { wc -c <"$1" | tr -d ' '; }
# overwrite bytes at offset $2 of file $1 with the hex string $3
# (octal escapes: POSIX printf has no \x)
patch() {
	hex=$3 esc=
	while [ -n "$hex" ]; do
		esc="$esc$(printf '\\%03o' "0x${hex%"${hex#??}"}")"
		hex=${hex#??}
	done
	printf "$esc" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

head -c $(( $(size_of mp4-faststart.mp4) / 2 )) mp4-faststart.mp4 >bad-mp4-faststart-truncated.mp4
head -c $(( $(size_of mp4-moovend.mp4) - 1000 )) mp4-moovend.mp4 >bad-mp4-moovend-truncated.mp4
head -c "$(box_offset mp4-moovend.mp4 moov)" mp4-moovend.mp4 >bad-mp4-moovend-nomoov.mp4
head -c $(( $(size_of fmp4.mp4) - 3000 )) fmp4.mp4 >bad-fmp4-truncated.mp4
cp mp4-faststart.mp4 bad-mp4-moov-size.mp4
patch bad-mp4-moov-size.mp4 "$(box_offset mp4-faststart.mp4 moov)" 7ffffff0
cp mp4-faststart.mp4 bad-mp4-stsz-count.mp4
patch bad-mp4-stsz-count.mp4 $(( $(box_offset mp4-faststart.mp4 stsz) + 16 )) 7fffffff
cp mp4-faststart.mp4 bad-mp4-child-size.mp4
patch bad-mp4-child-size.mp4 "$(box_offset mp4-faststart.mp4 trak)" 00000004
cp mp4-moovend.mp4 bad-mp4-stsz-sizes.mp4
patch bad-mp4-stsz-sizes.mp4 $(( $(box_offset mp4-moovend.mp4 stsz) + 20 )) 7fffffff
cp mp4-faststart.mp4 bad-mp4-stco.mp4
patch bad-mp4-stco.mp4 $(( $(box_offset mp4-faststart.mp4 stco) + 16 )) ffffff00
cp fmp4.mp4 bad-fmp4-trun-count.mp4
patch bad-fmp4-trun-count.mp4 $(( $(box_offset fmp4.mp4 trun) + 12 )) 40000000
head -c 20000 mp3-cbr128.mp3 >bad-mp3-truncated.mp3
cp mp3-cbr128.mp3 bad-mp3-corrupt-middle.mp3
dd if=/dev/zero of=bad-mp3-corrupt-middle.mp3 bs=1 seek=40000 count=2000 conv=notrunc status=none
head -c 30 mp3-cbr128.mp3 >bad-mp3-id3-truncated.mp3
head -c 4096 mp3-vbr-q4.mp3 >bad-mp3-xing-truncated.mp3
: >bad-empty.mp4

# What ffprobe says about each good fixture.
python3 - <<'EOF'
import glob, json, subprocess
out = {}
for f in sorted(glob.glob("*.mp4") + glob.glob("*.m4a") + glob.glob("*.mp3")):
    if f.startswith("bad-") or f.startswith("seed-"):
        continue
    p = json.loads(subprocess.check_output(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", f]))
    fmt = p["format"]
    out[f] = {
        "duration": float(fmt["duration"]),
        "bit_rate": int(fmt["bit_rate"]),
        "size": int(fmt["size"]),
        "streams": [{"index": s["index"], "codec_type": s["codec_type"], "codec_name": s["codec_name"],
                     "bit_rate": int(s.get("bit_rate", 0)), "duration": float(s.get("duration", 0))}
                    for s in p["streams"]],
    }
with open("ffprobe.json", "w") as w:
    json.dump(out, w, indent=1, sort_keys=True)
    w.write("\n")
EOF
ls -l
