// Package rtspsource pulls one RTSP stream from a camera with gortsplib and
// hands on whole H.264 or H.265 access units and G.711 audio packets. It turns
// the failures people hit with real cameras (wrong password, wrong path, a
// codec browsers cannot play, AAC) into errors that say what to change.
package rtspsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"
)

var (
	// ErrAuth means the camera refused the credentials in the URL.
	ErrAuth = errors.New("the camera refused the user name or password")
	// ErrNotFound means the camera has no stream at that path.
	ErrNotFound = errors.New("the camera has no stream at that path")
	// ErrNoVideo means the stream has no H.264 or H.265 video.
	ErrNoVideo = errors.New("the stream has no H.264 or H.265 video")
)

// Audio describes the audio track that passes through.
type Audio struct {
	// MimeType is "audio/PCMU" or "audio/PCMA".
	MimeType string
	// ClockRate is the RTP clock rate.
	ClockRate uint32
}

// Video codecs.
const (
	H264 = "H264"
	H265 = "H265"
)

// Info is what the stream offers, known after DESCRIBE.
type Info struct {
	// Codec is H264 or H265.
	Codec string
	// VPS (H.265 only), SPS and PPS from the SDP, if the camera put them
	// there.
	VPS, SPS, PPS []byte
	// Audio is nil when there is no audio that browsers can play.
	Audio *Audio
	// Skipped names tracks that were left out, with why.
	Skipped []string
}

// Handler receives the stream. Calls come from one goroutine.
type Handler struct {
	// OnInfo is called once after SETUP, before any media.
	OnInfo func(Info)
	// OnVideo gets each access unit (NAL units without start codes) with its
	// 90 kHz RTP timestamp.
	OnVideo func(au [][]byte, ts uint32)
	// OnAudio gets each audio RTP packet.
	OnAudio func(pkt *rtp.Packet)
	// OnBad, when set, hears of each packet that could not be used
	// (truncated, malformed, out of place), with what was wrong: the
	// stream goes on, and the caller counts and summarises.
	OnBad func(what string)
	// OnLost, when set, hears how many RTP packets went missing (sequence
	// gaps); the depacketizer resumes at the next whole frame.
	OnLost func(n uint64)
}

// Config says what to pull.
type Config struct {
	URL string
	// Transport is "tcp" (default: survives NAT and loss on the LAN), "udp"
	// or "auto".
	Transport string
	// KeyframeRequests asks the camera for a keyframe when the stream
	// starts playing and on each receive from Keyframes: RTCP PLI and FIR
	// on the RTSP session (RFC 4585, RFC 5104), which some cameras honour,
	// and ISAPI's requestKeyFrame when ISAPI is set. A camera that ignores
	// both sends its next keyframe on its own schedule, as before.
	KeyframeRequests bool
	Keyframes        <-chan struct{}
	// ISAPI is the camera's Hikvision requestKeyFrame URL, such as
	// http://192.168.1.64/ISAPI/Streaming/channels/101/requestKeyFrame; the
	// RTSP URL's user and password sign it (HTTP Digest).
	ISAPI string
	// OnAsked, when set, hears of each keyframe request sent (via "rtcp"
	// or "isapi") and of an ISAPI failure (err set).
	OnAsked func(via string, err error)
	Logger  *slog.Logger
}

// Run pulls the stream until ctx ends or the connection fails.
func Run(ctx context.Context, cfg Config, h Handler) error {
	u, err := base.ParseURL(cfg.URL)
	if err != nil {
		return fmt.Errorf("rtsp url: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, ReadTimeout: 10 * time.Second, UserAgent: "PeerCam device-agent",
		// gortsplib prints these with the standard logger, a line per
		// packet; they are counted and summarised instead.
		OnDecodeError: func(error) {
			if h.OnBad != nil {
				h.OnBad("undecodable RTP or RTCP")
			}
		},
		OnPacketsLost: func(n uint64) {
			if h.OnLost != nil {
				h.OnLost(n)
			}
		},
		OnTransportSwitch: func(err error) { log.Info("camera transport switched", "why", err) },
	}
	switch cfg.Transport {
	case "", "tcp":
		t := gortsplib.TransportTCP
		c.Transport = &t
	case "udp":
		t := gortsplib.TransportUDP
		c.Transport = &t
	}
	if err := c.Start2(); err != nil {
		return fmt.Errorf("connect to %s: %w", u.Host, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	if err != nil {
		return explain(err)
	}
	var info Info
	var h264f *format.H264
	var h265f *format.H265
	var videoFormat format.Format
	video := desc.FindFormat(&h264f)
	if video != nil {
		info.Codec, videoFormat = H264, h264f
		info.SPS, info.PPS = h264f.SafeParams()
	} else if video = desc.FindFormat(&h265f); video != nil {
		info.Codec, videoFormat = H265, h265f
		info.VPS, info.SPS, info.PPS = h265f.SafeParams()
	} else {
		return fmt.Errorf("%w (%s)", ErrNoVideo, describeFormats(desc))
	}
	if _, err := c.Setup(desc.BaseURL, video, 0, 0); err != nil {
		return explain(err)
	}

	var audio *description.Media
	var g711 *format.G711
	if m := desc.FindFormat(&g711); m != nil {
		if g711.SampleRate == 8000 && g711.ChannelCount == 1 {
			audio = m
			info.Audio = &Audio{MimeType: "audio/PCMA", ClockRate: 8000}
			if g711.MULaw {
				info.Audio.MimeType = "audio/PCMU"
			}
		} else {
			info.Skipped = append(info.Skipped, fmt.Sprintf("G.711 at %d Hz × %d channels: browsers play only 8 kHz mono", g711.SampleRate, g711.ChannelCount))
		}
	}
	var aac *format.MPEG4Audio
	if audio == nil && desc.FindFormat(&aac) != nil {
		info.Skipped = append(info.Skipped, "AAC audio: browsers cannot play AAC over WebRTC; set the camera's audio codec to G.711 to hear it")
	}
	if audio != nil {
		if _, err := c.Setup(desc.BaseURL, audio, 0, 0); err != nil {
			return explain(err)
		}
	}
	if h.OnInfo != nil {
		h.OnInfo(info)
	}

	onVideo, err := videoPackets(videoFormat, h)
	if err != nil {
		return err
	}
	var ask *asker
	if cfg.KeyframeRequests {
		ask = newAsker(ctx, c, video, cfg, u)
		// The RTCP request names the camera's SSRC, known from its first
		// packet; ISAPI needs none and goes once PLAY is answered.
		inner := onVideo
		onVideo = func(pkt *rtp.Packet) {
			ask.seen(pkt.SSRC)
			inner(pkt)
		}
		defer ask.stop()
	}
	c.OnPacketRTP(video, videoFormat, onVideo)
	if audio != nil && h.OnAudio != nil {
		c.OnPacketRTP(audio, g711, func(pkt *rtp.Packet) { h.OnAudio(pkt) })
	}
	if _, err := c.Play(nil); err != nil {
		return explain(err)
	}
	if ask != nil {
		ask.playing()
	}
	err = c.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return explain(err)
}

// videoPackets turns the camera's video RTP packets into h's calls: an
// access unit to OnVideo when one is complete, a word to OnBad for a packet
// that cannot be used. Nothing a camera sends can make it fail.
func videoPackets(f format.Format, h Handler) (func(*rtp.Packet), error) {
	decode, err := depacketizer(f)
	if err != nil {
		return nil, err
	}
	return func(pkt *rtp.Packet) {
		au, err := decode(pkt)
		if err != nil {
			if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrMorePacketsNeeded) && h.OnBad != nil {
				h.OnBad(badKind(err))
			}
			return
		}
		if len(au) > 0 && h.OnVideo != nil {
			h.OnVideo(au, pkt.Timestamp)
		}
	}, nil
}

// depacketizer returns the RTP-to-access-unit decoder for an H.264 or H.265
// format.
func depacketizer(f format.Format) (func(*rtp.Packet) ([][]byte, error), error) {
	switch f := f.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return dec.Decode, nil
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return dec.Decode, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNoVideo, f.Codec())
}

// badKind names what was wrong with a packet, for the summary: a few
// stable words rather than every error's text.
func badKind(err error) string {
	switch {
	case errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious), errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious):
		return "fragment without its start"
	}
	msg := err.Error()
	for _, k := range []string{"invalid", "too big", "short", "unsupported", "discontinuity"} {
		if strings.Contains(msg, k) {
			return "malformed (" + k + ")"
		}
	}
	return "malformed"
}

func describeFormats(desc *description.Session) string {
	var names []string
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			names = append(names, f.Codec())
		}
	}
	if len(names) == 0 {
		return "no tracks"
	}
	return "it has " + strings.Join(names, ", ") + "; set the camera's video to H.264 or H.265"
}

// explain maps gortsplib's errors to ones a person can act on.
func explain(err error) error {
	var bad liberrors.ErrClientBadStatusCode
	if errors.As(err, &bad) {
		switch bad.Code {
		case base.StatusUnauthorized:
			return fmt.Errorf("%w (RTSP 401): check the user and password in the camera URL", ErrAuth)
		case base.StatusNotFound:
			return fmt.Errorf("%w (RTSP 404): check the path in the camera URL", ErrNotFound)
		}
	}
	return err
}
