package proto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ProtocolVersion is the version this package speaks; see the history in doc.go.
const ProtocolVersion = 1

// MaxMessageSize is the largest frame any reader accepts. An SDP offer from a
// browser with audio and video is 5–10 KB; 64 KiB leaves room without letting a
// peer make us buffer megabytes.
const MaxMessageSize = 64 << 10

// Stream names a camera's stream.
const (
	StreamMain = "main"
	StreamSub  = "sub"
)

// Message is any signaling message.
type Message interface {
	// MessageType is the "type" value on the wire.
	MessageType() string
	validate() error
	envelope() *Header
}

// Header is the envelope every message starts with. Encode fills it in.
type Header struct {
	V    int    `json:"v"`
	Type string `json:"type"`
}

// envelope gives Encode the header every message embeds.
func (h *Header) envelope() *Header { return h }

// ICEServer is a STUN or TURN server as RTCIceServer describes it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Camera is one camera as the agent reports it.
type Camera struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	HasSub bool   `json:"has_sub,omitempty"`
}

// Hello opens the device handshake.
type Hello struct {
	Header
	DeviceID     string   `json:"device_id"`
	PublicKey    []byte   `json:"public_key"`
	AgentVersion string   `json:"agent_version,omitempty"`
	Cameras      []Camera `json:"cameras"`
}

// Challenge carries the nonce the device must sign.
type Challenge struct {
	Header
	Nonce []byte `json:"nonce"`
}

// Auth is the device's signature over AuthPayload(nonce, device_id).
type Auth struct {
	Header
	Signature []byte `json:"signature"`
}

// Welcome ends a successful device handshake.
type Welcome struct {
	Header
	Claimed bool   `json:"claimed"`
	Owner   string `json:"owner,omitempty"`
	// OwnerID and Claim identify the current owner and claim; a viewer
	// token is valid only if it names both (claims own and clm).
	OwnerID    int64       `json:"owner_id,omitempty"`
	Claim      string      `json:"claim,omitempty"`
	ServerKey  []byte      `json:"server_key"`
	ICEServers []ICEServer `json:"ice_servers"`
	// Time is the rendezvous's clock when it sent the welcome. Agents on
	// recorders whose clock reset at boot use it to check viewer tokens.
	Time time.Time `json:"time,omitzero"`
}

// ClaimCode is the one-time code an unclaimed device shows its owner.
type ClaimCode struct {
	Header
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
	URL     string    `json:"url"`
}

// Claimed tells the device that an owner has claimed it.
type Claimed struct {
	Header
	Owner   string `json:"owner"`
	OwnerID int64  `json:"owner_id"`
	Claim   string `json:"claim"`
}

// Unclaimed tells a device its owner removed it: every viewer token issued
// for it is void, live sessions end, and a new claim code follows.
type Unclaimed struct {
	Header
	Reason string `json:"reason,omitempty"`
}

// Open asks for a session with one camera.
type Open struct {
	Header
	Device string `json:"device"`
	Camera string `json:"camera"`
	Stream string `json:"stream,omitempty"`
	Token  string `json:"token,omitempty"`
	// Resume names a session this viewer opened on a connection its
	// network change broke: the rendezvous moves the session to this
	// connection (same ID) if the viewer is still allowed to watch, and
	// the viewer then restarts ICE with a new offer.
	Resume string `json:"resume,omitempty"`
	// Ref is the viewer's own label for this open (at most 64 bytes); the
	// session or error that answers it carries the same ref, so a viewer
	// with several opens in flight on one socket can tell which was refused.
	Ref string `json:"ref,omitempty"`
}

// Session acknowledges Open.
type Session struct {
	Header
	Session    string      `json:"session"`
	ICEServers []ICEServer `json:"ice_servers"`
	Ref        string      `json:"ref,omitempty"`
}

// Offer is the viewer's SDP offer. Camera, Stream, Token and Trickle are set by
// the rendezvous when it forwards the offer to the agent.
type Offer struct {
	Header
	Session string `json:"session"`
	SDP     string `json:"sdp"`
	Camera  string `json:"camera,omitempty"`
	Stream  string `json:"stream,omitempty"`
	Token   string `json:"token,omitempty"`
	Trickle *bool  `json:"trickle,omitempty"`
	// ICEServers, from the rendezvous to the agent, are this session's
	// STUN/TURN servers, with TURN credentials minted for it; they replace
	// the welcome's.
	ICEServers []ICEServer `json:"ice_servers,omitempty"`
}

// Answer is the agent's SDP answer.
type Answer struct {
	Header
	Session string `json:"session"`
	SDP     string `json:"sdp"`
	// Served says which stream the agent chose for this viewer, and why
	// when it is not the one asked for.
	Served *Served `json:"served,omitempty"`
}

// Video codecs, as Served names them.
const (
	CodecH264 = "H264"
	CodecH265 = "H265"
)

// Served is what a viewer gets: the agent picks, per viewer, the best stream
// that viewer can play (the main stream in a codec it decodes, else the H.264
// sub stream), and says so, so the page can tell the person.
type Served struct {
	// Stream is "main" or "sub", as served.
	Stream string `json:"stream"`
	// Codec is "H264" or "H265".
	Codec  string `json:"codec"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	// Note is a sentence on why this is not the stream asked for, and what
	// would get it ("this browser cannot play H.265; …"); empty otherwise.
	Note string `json:"note,omitempty"`
	// Audio is a sentence when there is no sound and why ("the camera sends
	// AAC; set its audio to G.711"); empty when sound plays or the camera
	// has no microphone.
	Audio string `json:"audio,omitempty"`
}

// Candidate is one trickled ICE candidate; an empty Candidate ends the list.
type Candidate struct {
	Header
	Session       string  `json:"session"`
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdp_mid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdp_mline_index,omitempty"`
}

// Bye ends a session.
type Bye struct {
	Header
	Session string `json:"session"`
	Reason  string `json:"reason,omitempty"`
}

// Path is the agent's report of the connected candidate pair of a session,
// for the owner's audit log. Device to rendezvous only.
type Path struct {
	Header
	Session string `json:"session"`
	Relayed bool   `json:"relayed"`
	// Local and Remote are the candidate types: host, srflx, prflx, relay.
	Local  string `json:"local"`
	Remote string `json:"remote"`
}

// Camera states a Status reports.
const (
	// StateCameraLost: the camera stopped sending; the agent is
	// reconnecting, and the session stays up.
	StateCameraLost = "camera_lost"
	// StateCameraBack: the camera sends again; video resumes at once.
	StateCameraBack = "camera_back"
)

// Status is the agent's word on a live session's camera, for the viewer's
// page: lost (reconnecting) or back. Device to viewer, through the
// rendezvous; never answered.
type Status struct {
	Header
	Session string `json:"session"`
	State   string `json:"state"`
	// Message is what the person reads.
	Message string `json:"message,omitempty"`
}

// Error reports a failure; Session is empty for connection-level errors.
type Error struct {
	Header
	Session string `json:"session,omitempty"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Ref echoes open.ref when the error refuses that open.
	Ref string `json:"ref,omitempty"`
}

func (*Hello) MessageType() string     { return "hello" }
func (*Challenge) MessageType() string { return "challenge" }
func (*Auth) MessageType() string      { return "auth" }
func (*Welcome) MessageType() string   { return "welcome" }
func (*ClaimCode) MessageType() string { return "claim_code" }
func (*Claimed) MessageType() string   { return "claimed" }
func (*Unclaimed) MessageType() string { return "unclaimed" }
func (*Open) MessageType() string      { return "open" }
func (*Session) MessageType() string   { return "session" }
func (*Offer) MessageType() string     { return "offer" }
func (*Answer) MessageType() string    { return "answer" }
func (*Candidate) MessageType() string { return "candidate" }
func (*Bye) MessageType() string       { return "bye" }
func (*Error) MessageType() string     { return "error" }
func (*Path) MessageType() string      { return "path" }
func (*Status) MessageType() string    { return "status" }

var constructors = map[string]func() Message{
	"hello":      func() Message { return &Hello{} },
	"challenge":  func() Message { return &Challenge{} },
	"auth":       func() Message { return &Auth{} },
	"welcome":    func() Message { return &Welcome{} },
	"claim_code": func() Message { return &ClaimCode{} },
	"claimed":    func() Message { return &Claimed{} },
	"unclaimed":  func() Message { return &Unclaimed{} },
	"open":       func() Message { return &Open{} },
	"session":    func() Message { return &Session{} },
	"offer":      func() Message { return &Offer{} },
	"answer":     func() Message { return &Answer{} },
	"candidate":  func() Message { return &Candidate{} },
	"bye":        func() Message { return &Bye{} },
	"error":      func() Message { return &Error{} },
	"path":       func() Message { return &Path{} },
	"status":     func() Message { return &Status{} },
}

func required(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is required", ErrBadMessage, field)
	}
	return nil
}

func (m *Hello) validate() error {
	if err := required("device_id", m.DeviceID); err != nil {
		return err
	}
	if len(m.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public_key must be %d bytes", ErrBadMessage, ed25519.PublicKeySize)
	}
	for i, c := range m.Cameras {
		if c.ID == "" {
			return fmt.Errorf("%w: cameras[%d].id is required", ErrBadMessage, i)
		}
	}
	return nil
}

func (m *Challenge) validate() error {
	if len(m.Nonce) < 16 {
		return fmt.Errorf("%w: nonce must be at least 16 bytes", ErrBadMessage)
	}
	return nil
}

func (m *Auth) validate() error {
	if len(m.Signature) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature must be %d bytes", ErrBadMessage, ed25519.SignatureSize)
	}
	return nil
}

func (m *Welcome) validate() error {
	if len(m.ServerKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: server_key must be %d bytes", ErrBadMessage, ed25519.PublicKeySize)
	}
	return nil
}

func (m *ClaimCode) validate() error {
	if err := required("code", m.Code); err != nil {
		return err
	}
	if m.Expires.IsZero() {
		return fmt.Errorf("%w: expires is required", ErrBadMessage)
	}
	return nil
}

func (m *Claimed) validate() error {
	if err := required("owner", m.Owner); err != nil {
		return err
	}
	return required("claim", m.Claim)
}

func (m *Unclaimed) validate() error { return nil }

func (m *Open) validate() error {
	if err := required("device", m.Device); err != nil {
		return err
	}
	if err := required("camera", m.Camera); err != nil {
		return err
	}
	if len(m.Ref) > 64 {
		return fmt.Errorf("%w: ref is longer than 64 bytes", ErrBadMessage)
	}
	return validStream(m.Stream)
}

func validStream(s string) error {
	switch s {
	case "", StreamMain, StreamSub:
		return nil
	}
	return fmt.Errorf("%w: stream must be %q or %q", ErrBadMessage, StreamMain, StreamSub)
}

func (m *Session) validate() error { return required("session", m.Session) }

func (m *Offer) validate() error {
	if err := required("session", m.Session); err != nil {
		return err
	}
	if err := required("sdp", m.SDP); err != nil {
		return err
	}
	return validStream(m.Stream)
}

func (m *Answer) validate() error {
	if err := required("session", m.Session); err != nil {
		return err
	}
	return required("sdp", m.SDP)
}

func (m *Candidate) validate() error { return required("session", m.Session) }
func (m *Bye) validate() error       { return required("session", m.Session) }
func (m *Path) validate() error      { return required("session", m.Session) }

func (m *Status) validate() error {
	if err := required("session", m.Session); err != nil {
		return err
	}
	switch m.State {
	case StateCameraLost, StateCameraBack:
		return nil
	}
	return fmt.Errorf("%w: state must be %q or %q", ErrBadMessage, StateCameraLost, StateCameraBack)
}

func (m *Error) validate() error {
	if err := required("code", string(m.Code)); err != nil {
		return err
	}
	return nil
}

// Encode stamps the envelope on m and marshals it.
func Encode(m Message) ([]byte, error) {
	h := m.envelope()
	h.V, h.Type = ProtocolVersion, m.MessageType()
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("proto: encode %s: %w", h.Type, err)
	}
	var b []byte
	ok := false
	if direct != nil {
		b, ok = direct(nil, m)
	}
	if !ok {
		var err error
		if b, err = json.Marshal(m); err != nil {
			return nil, fmt.Errorf("proto: encode %s: %w", h.Type, err)
		}
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("proto: encode %s: %w", h.Type, ErrTooLarge)
	}
	return b, nil
}

// Decode parses one frame strictly. Its errors wrap one of the sentinel errors
// in errors.go; CodeOf maps them to the wire code.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("proto: %w (%d bytes, limit %d)", ErrTooLarge, len(b), MaxMessageSize)
	}
	if m := decodeFast(b); m != nil {
		return m, nil
	}
	return decodeSlow(b)
}

var typeKey = []byte(`"type":"`)

// flat is decodeFlat once DecodeOnePass was called.
var flat func(b []byte, typ string, m Message) bool

// DecodeOnePass makes Decode read the frames a relay sees most (offers,
// answers, candidates, opens, byes) in one pass (decodeFlat). The
// rendezvous turns it on; the agent, which decodes a few frames a session
// and whose binary must fit small recorders' flash, leaves it off, and the
// linker leaves it out. Call it before decoding starts.
func DecodeOnePass() { flat = decodeFlat }

// decodeFast is Decode for a well-formed frame in one strict pass instead
// of two: it guesses the type from the first "type":"…" in the frame and
// keeps the result only if the strict decode agrees on type and version
// and the message is valid. Anything else (nil) goes the slow way, which
// has the exact errors; what the fast way accepts, the slow way accepts.
func decodeFast(b []byte) Message {
	i := bytes.Index(b, typeKey)
	if i < 0 {
		return nil
	}
	rest := b[i+len(typeKey):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return nil
	}
	typ := string(rest[:j])
	newMsg, ok := constructors[typ]
	if !ok {
		return nil
	}
	m := newMsg()
	if flat == nil || !flat(b, typ, m) {
		m = newMsg()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if dec.Decode(m) != nil {
			return nil
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil
		}
	}
	if h := m.envelope(); h.Type != typ || h.V != ProtocolVersion || m.validate() != nil {
		return nil
	}
	return m
}

func decodeSlow(b []byte) (Message, error) {
	var h struct {
		V    *int    `json:"v"`
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("proto: %w: %s", ErrBadMessage, jsonProblem(err))
	}
	if h.V == nil {
		return nil, fmt.Errorf("proto: %w: \"v\" is missing", ErrUnsupportedVersion)
	}
	if *h.V != ProtocolVersion {
		return nil, fmt.Errorf("proto: %w: v=%d, this peer speaks v=%d", ErrUnsupportedVersion, *h.V, ProtocolVersion)
	}
	if h.Type == nil || *h.Type == "" {
		return nil, fmt.Errorf("proto: %w: \"type\" is missing", ErrBadMessage)
	}
	newMsg, ok := constructors[*h.Type]
	if !ok {
		return nil, fmt.Errorf("proto: %w: %q", ErrUnknownType, *h.Type)
	}
	m := newMsg()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("proto: %w: %s: %s", ErrBadMessage, *h.Type, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("proto: %w: %s: data after the object", ErrBadMessage, *h.Type)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("proto: %s: %w", *h.Type, err)
	}
	return m, nil
}

// jsonProblem turns encoding/json's errors into a short sentence.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "a message must be a JSON object, not " + te.Value
		}
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

var deviceIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// DeviceID derives a device's ID from its Ed25519 public key.
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return strings.ToLower(deviceIDEncoding.EncodeToString(sum[:16]))
}

// AuthPayload is what a device signs to prove it holds its key. The prefix
// separates it from any other use of the key.
func AuthPayload(nonce []byte, deviceID string) []byte {
	p := make([]byte, 0, 32+len(nonce)+len(deviceID))
	p = append(p, "peercam-device-auth-v1\x00"...)
	p = append(p, deviceID...)
	p = append(p, 0)
	return append(p, nonce...)
}
