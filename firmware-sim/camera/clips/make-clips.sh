#!/bin/sh
# Regenerates the embedded test clips. Run from this folder; needs Debian's ffmpeg
# and fonts-dejavu-core. The clips are committed so that builds need neither.
#
# Each channel gets an H.264 main stream (1280x720, 25 fps, High profile, keyframe every
# 4 s) and a sub stream (640x360, 15 fps, Main profile, keyframe every 2 s), both
# without B-frames and with SPS/PPS repeated before every keyframe, 8 s long.
# The picture shows the channel, the stream and the clip's frame number, and a box
# moves along the bottom so a screenshot shows whether video is live.
set -eu
F=/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf
colors="0x1d2b3a 0x2b1d3a 0x1d3a2b 0x3a2b1d"
ch=1
for color in $colors; do
  ffmpeg -y -loglevel error -f lavfi -i "color=c=$color:s=1280x720:r=25:d=8" \
    -vf "drawbox=x='mod(t*160,1180)':y=600:w=100:h=60:color=0xf0a030:t=fill,drawtext=fontfile=$F:text='CH $ch  MAIN':fontsize=110:fontcolor=white:x=80:y=120,drawtext=fontfile=$F:text='frame %{n}':fontsize=80:fontcolor=0x9fd0ff:x=80:y=330" \
    -c:v libx264 -profile:v high -level 3.1 -bf 0 -g 100 -keyint_min 100 -sc_threshold 0 \
    -x264-params repeat-headers=1 -pix_fmt yuv420p -b:v 600k -maxrate 800k -bufsize 1600k \
    -f h264 "ch${ch}-main.h264"
  ffmpeg -y -loglevel error -f lavfi -i "color=c=$color:s=640x360:r=15:d=8" \
    -vf "drawbox=x='mod(t*80,590)':y=300:w=50:h=30:color=0xf0a030:t=fill,drawtext=fontfile=$F:text='CH $ch  SUB':fontsize=55:fontcolor=white:x=40:y=60,drawtext=fontfile=$F:text='frame %{n}':fontsize=40:fontcolor=0x9fd0ff:x=40:y=165" \
    -c:v libx264 -profile:v main -level 3.0 -bf 0 -g 30 -keyint_min 30 -sc_threshold 0 \
    -x264-params repeat-headers=1 -pix_fmt yuv420p -b:v 250k -maxrate 350k -bufsize 700k \
    -f h264 "ch${ch}-sub.h264"
  ch=$((ch + 1))
done
# H.265 Main main streams, as most NVRs since about 2018 send by default (with
# an H.264 sub stream): the same picture, no B-frames, VPS/SPS/PPS repeated
# before every keyframe, a keyframe every 4 s.
ch=1
for color in $colors; do
  ffmpeg -y -loglevel error -f lavfi -i "color=c=$color:s=1280x720:r=25:d=8" \
    -vf "drawbox=x='mod(t*160,1180)':y=600:w=100:h=60:color=0xf0a030:t=fill,drawtext=fontfile=$F:text='CH $ch  MAIN H.265':fontsize=90:fontcolor=white:x=80:y=120,drawtext=fontfile=$F:text='frame %{n}':fontsize=80:fontcolor=0x9fd0ff:x=80:y=330" \
    -c:v libx265 -profile:v main -pix_fmt yuv420p \
    -x265-params "bframes=0:keyint=100:min-keyint=100:scenecut=0:repeat-headers=1:log-level=error:bitrate=350:vbv-maxrate=500:vbv-bufsize=1000" \
    -f hevc "ch${ch}-main.h265"
  ch=$((ch + 1))
done
# A stream with B-frames, as some real cameras send, to test detection.
ffmpeg -y -loglevel error -f lavfi -i "color=c=0x3a1d1d:s=640x360:r=15:d=4" \
  -vf "drawbox=x='mod(t*80,590)':y=300:w=50:h=30:color=0xf0a030:t=fill" \
  -c:v libx264 -profile:v main -bf 2 -g 30 -keyint_min 30 -sc_threshold 0 \
  -x264-params repeat-headers=1 -pix_fmt yuv420p -b:v 150k -f h264 bframes.h264
# A main stream with a keyframe only every 10 s, as cameras set for low
# bitrate (or "smart codec" modes) send: 10 s long, one keyframe at its
# start, so looped it keeps the interval.
F2=/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf
ffmpeg -y -loglevel error -f lavfi -i "color=c=0x2b2b2b:s=1280x720:r=25:d=10" \
  -vf "drawbox=x='mod(t*160,1180)':y=600:w=100:h=60:color=0xf0a030:t=fill,drawtext=fontfile=$F2:text='LONG GOP 10 s':fontsize=100:fontcolor=white:x=80:y=120,drawtext=fontfile=$F2:text='frame %{n}':fontsize=80:fontcolor=0x9fd0ff:x=80:y=330" \
  -c:v libx264 -profile:v high -level 3.1 -bf 0 -g 250 -keyint_min 250 -sc_threshold 0 \
  -x264-params repeat-headers=1 -pix_fmt yuv420p -b:v 400k -maxrate 600k -bufsize 1200k \
  -f h264 longgop.h264
