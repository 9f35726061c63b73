package proto

import "errors"

// Code is a wire error code; doc.go lists what each means.
type Code string

// The wire error codes.
const (
	CodeBadMessage         Code = "bad_message"
	CodeUnknownType        Code = "unknown_type"
	CodeUnsupportedVersion Code = "unsupported_version"
	CodeTooLarge           Code = "too_large"
	CodeUnauthorized       Code = "unauthorized"
	CodeForbidden          Code = "forbidden"
	CodeAuthFailed         Code = "auth_failed"
	CodeKeyMismatch        Code = "key_mismatch"
	CodeNotFound           Code = "not_found"
	CodeDeviceOffline      Code = "device_offline"
	CodeCameraUnreachable  Code = "camera_unreachable"
	CodeCodecUnsupported   Code = "codec_unsupported"
	CodeRateLimited        Code = "rate_limited"
	CodeTimeout            Code = "timeout"
	CodeInternal           Code = "internal"
	CodeRevoked            Code = "revoked"
	CodeExpired            Code = "expired"
	CodeViewerCap          Code = "viewer_cap"
)

var (
	// ErrBadMessage means the frame is not a well-formed message of its type.
	ErrBadMessage = errors.New("bad message")
	// ErrUnknownType means the "type" is not defined in this protocol version.
	ErrUnknownType = errors.New("unknown message type")
	// ErrUnsupportedVersion means "v" is missing or not ProtocolVersion.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrTooLarge means the frame exceeds MaxMessageSize.
	ErrTooLarge = errors.New("message too large")
)

// CodeOf maps a Decode or Encode error to its wire code.
func CodeOf(err error) Code {
	switch {
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrUnsupportedVersion):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrUnknownType):
		return CodeUnknownType
	case errors.Is(err, ErrBadMessage):
		return CodeBadMessage
	}
	return CodeInternal
}

// NewError builds an error message for the wire.
func NewError(session string, code Code, message string) *Error {
	return &Error{Session: session, Code: code, Message: message}
}
