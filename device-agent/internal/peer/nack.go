package peer

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// nackHistory is how many packets of each video stream a viewer can ask
// again: at 2 Mbit/s (about 190 packets a second) 2.7 s, many round trips.
const nackHistory = 512

// nackResponder answers a viewer's NACKs by sending the packets again. It
// is pion's responder without its copy: pion copies every packet it sends
// into a 1460-byte buffer of its own and keeps 1024 per stream, 1.5 MiB a
// viewer, for payloads that are the same for every viewer of a camera.
// This one keeps the header (its sequence number and SSRC are the
// viewer's) and a reference to the payload, which the fanout shares
// between viewers and nobody writes to after it is made: about 100 bytes a
// packet. Streams that did not negotiate NACK are left alone.
type nackResponder struct {
	interceptor.NoOp
	mu      sync.Mutex // guards streams
	streams map[uint32]*nackStream
}

type nackStream struct {
	mu     sync.Mutex // guards ring
	ring   [nackHistory]sentPacket
	writer interceptor.RTPWriter
}

type sentPacket struct {
	ok      bool
	header  rtp.Header
	payload []byte
}

type nackResponderFactory struct{}

func (nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{streams: map[uint32]*nackStream{}}, nil
}

func wantsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if !wantsNACK(info) {
		return writer
	}
	st := &nackStream{writer: writer}
	n.mu.Lock()
	n.streams[info.SSRC] = st
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == info.SSRC {
			st.mu.Lock()
			e := &st.ring[h.SequenceNumber%nackHistory]
			e.ok, e.header, e.payload = true, *h, payload
			if len(h.Extensions) > 0 || len(h.CSRC) > 0 {
				e.header = h.Clone() // pion may reuse what these point to
			}
			st.mu.Unlock()
		}
		return writer.Write(h, payload, a)
	})
}

func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

func (n *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = interceptor.Attributes{}
		}
		pkts, err := attr.GetRTCPPackets(b[:i])
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				n.resend(nack)
			}
		}
		return i, attr, nil
	})
}

// resend sends again what the NACK lists and the ring still has; packets
// gone from it are skipped (the viewer asks for a keyframe instead).
func (n *nackResponder) resend(nack *rtcp.TransportLayerNack) {
	n.mu.Lock()
	st := n.streams[nack.MediaSSRC]
	n.mu.Unlock()
	if st == nil {
		return
	}
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			st.mu.Lock()
			e := st.ring[seq%nackHistory]
			st.mu.Unlock()
			if e.ok && e.header.SequenceNumber == seq {
				_, _ = st.writer.Write(&e.header, e.payload, nil)
			}
			return true
		})
	}
}

func (n *nackResponder) Close() error {
	n.mu.Lock()
	n.streams = map[uint32]*nackStream{}
	n.mu.Unlock()
	return nil
}
