#!/bin/sh
# Makes the sample the demo serves: 10 s of test pattern and a 440 Hz tone,
# H.264 + AAC, fast-start MP4 (about 190 KB).
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i testsrc=size=320x240:rate=25:duration=10 \
  -f lavfi -i sine=frequency=440:sample_rate=44100:duration=10 \
  -c:v libx264 -b:v 120k -g 50 -c:a aac -b:a 48k -movflags +faststart \
  -metadata title="castmesh sample" sample.mp4
