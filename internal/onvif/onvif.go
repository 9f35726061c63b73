// Package onvif is the small part of ONVIF that finding cameras needs, for
// the agent (as a client) and the simulator (as a server): WS-Discovery
// probes, WS-Security UsernameToken authentication, and the Device and
// Media calls GetDeviceInformation, GetCapabilities, GetProfiles and
// GetStreamUri. It is written here rather than taken from a full ONVIF
// library because the agent must fit a 12 MiB budget on ARM recorders:
// IOTechSystems/onvif, which covers far more (PTZ, events, imaging), adds
// about 390 KiB to the armv7 agent (measured), which would break the budget;
// this package, with the agent's discover command and onvif: setting, adds
// under 64 KiB, since encoding/xml was linked already.
package onvif

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"
)

// XML namespaces (ONVIF Core Specification, section 5.3).
const (
	NSEnvelope  = "http://www.w3.org/2003/05/soap-envelope"
	NSDevice    = "http://www.onvif.org/ver10/device/wsdl"
	NSMedia     = "http://www.onvif.org/ver10/media/wsdl"
	NSSchema    = "http://www.onvif.org/ver10/schema"
	NSSecurity  = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	NSUtility   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	NSDiscovery = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
	NSAddress   = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	NSNetwork   = "http://www.onvif.org/ver10/network/wsdl"
	// PasswordDigest is the UsernameToken password type ONVIF requires.
	PasswordDigest = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
)

var (
	// ErrAuth means the device refused the user name or password.
	ErrAuth = errors.New("the device refused the ONVIF user name or password")
	// ErrFault is a SOAP fault the device answered with.
	ErrFault = errors.New("ONVIF fault")
)

// Digest is the UsernameToken password digest: Base64(SHA-1(nonce +
// created + password)) (WS-Security UsernameToken Profile 1.0, section 3.1).
func Digest(nonce []byte, created, password string) string {
	h := sha1.New()
	h.Write(nonce)
	h.Write([]byte(created))
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// securityHeader is the WS-Security header for user and pass, made now.
func securityHeader(user, pass string, now time.Time) string {
	if user == "" {
		return ""
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	created := now.UTC().Format("2006-01-02T15:04:05.000Z")
	return fmt.Sprintf(`<s:Header><wsse:Security s:mustUnderstand="1" xmlns:wsse="%s" xmlns:wsu="%s"><wsse:UsernameToken>`+
		`<wsse:Username>%s</wsse:Username><wsse:Password Type="%s">%s</wsse:Password>`+
		`<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">%s</wsse:Nonce>`+
		`<wsu:Created>%s</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>`,
		NSSecurity, NSUtility, escape(user), PasswordDigest, Digest(nonce, created, pass),
		base64.StdEncoding.EncodeToString(nonce), created)
}

// Envelope wraps a SOAP 1.2 body (with its namespace declarations) and an
// optional header.
func Envelope(header, body string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` +
		`<s:Envelope xmlns:s="` + NSEnvelope + `" xmlns:tds="` + NSDevice + `" xmlns:trt="` + NSMedia + `" xmlns:tt="` + NSSchema + `">` +
		header + `<s:Body>` + body + `</s:Body></s:Envelope>`
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Token is the UsernameToken a request carried.
type Token struct {
	Username string `xml:"Username"`
	Password struct {
		Type  string `xml:"Type,attr"`
		Value string `xml:",chardata"`
	} `xml:"Password"`
	Nonce   string `xml:"Nonce"`
	Created string `xml:"Created"`
}

// Check verifies the token against user and pass (PasswordDigest, or
// PasswordText which some clients send), within maxAge of now.
func (t *Token) Check(user, pass string, now time.Time, maxAge time.Duration) bool {
	if t == nil || t.Username != user {
		return false
	}
	if t.Password.Type != "" && !strings.HasSuffix(t.Password.Type, "#PasswordDigest") {
		return t.Password.Value == pass
	}
	created, err := time.Parse(time.RFC3339Nano, t.Created)
	if err != nil || now.Sub(created).Abs() > maxAge {
		return false
	}
	nonce, err := base64.StdEncoding.DecodeString(t.Nonce)
	if err != nil {
		return false
	}
	return Digest(nonce, t.Created, pass) == t.Password.Value
}

// Request is a parsed SOAP request as the simulator sees it.
type Request struct {
	// Action is the local name of the body's element (GetProfiles, …).
	Action string
	// Token is the WS-Security UsernameToken, nil without one.
	Token *Token
	// ProfileToken is GetStreamUri's profile.
	ProfileToken string
}

// ParseRequest reads a SOAP request.
func ParseRequest(b []byte) (*Request, error) {
	var env struct {
		Header struct {
			Security struct {
				UsernameToken *Token `xml:"UsernameToken"`
			} `xml:"Security"`
		} `xml:"Header"`
		Body struct {
			Inner []struct {
				XMLName      xml.Name
				ProfileToken string `xml:"ProfileToken"`
			} `xml:",any"`
		} `xml:"Body"`
	}
	if err := xml.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("onvif: request: %w", err)
	}
	if len(env.Body.Inner) == 0 {
		return nil, errors.New("onvif: request: empty body")
	}
	r := &Request{Action: env.Body.Inner[0].XMLName.Local, ProfileToken: env.Body.Inner[0].ProfileToken}
	r.Token = env.Header.Security.UsernameToken
	return r, nil
}

// DeviceInfo is GetDeviceInformation's answer.
type DeviceInfo struct {
	Manufacturer    string `xml:"Manufacturer"`
	Model           string `xml:"Model"`
	FirmwareVersion string `xml:"FirmwareVersion"`
	SerialNumber    string `xml:"SerialNumber"`
	HardwareID      string `xml:"HardwareId"`
}

// Profile is one media profile: a video source at one encoding.
type Profile struct {
	Token string
	Name  string
	// Source is the video source's token: a camera, or an NVR channel.
	// Profiles of one source are its main and sub streams.
	Source string
	// Encoding is H264, H265 (ONVIF's Media service says "H264"; Media2's
	// "H265" also appears in Media answers of many NVRs) or JPEG.
	Encoding      string
	Width, Height int
}

// ProbeMatch is a device that answered a WS-Discovery probe.
type ProbeMatch struct {
	// Address is the endpoint reference (usually urn:uuid:…).
	Address string
	// XAddrs are the device service URLs.
	XAddrs []string
	Scopes []string
}
