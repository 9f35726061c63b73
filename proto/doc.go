// Package proto is the signaling contract between device-agent, rendezvous and
// viewers. It is the only thing the binaries share on the wire, so it is written
// down here well enough to build a compatible client from this file alone.
//
// # Transport
//
// Signaling runs over WebSocket (RFC 6455), one JSON object per text frame.
// Devices connect to /ws/device, viewers to /ws/viewer on the rendezvous. A frame
// larger than [MaxMessageSize] bytes ends the connection with WebSocket close
// code 1009 (message too big, RFC 6455 section 7.4.1). Every message is an
// envelope:
//
//	{"v":1,"type":"offer", ...fields of that type...}
//
// Decoding is strict: a missing or unknown "v", an unknown "type", a field the
// type does not define, a field of the wrong JSON type or a missing required
// field are all errors, answered with an [Error] message carrying a [Code].
//
// # Device flow
//
//	agent                          rendezvous
//	  | hello{device_id,public_key,  |
//	  |   agent_version,cameras}  -->|  device_id must equal DeviceID(public_key)
//	  |<-- challenge{nonce}          |  32 random bytes, one use
//	  | auth{signature}           -->|  Ed25519 over AuthPayload(nonce, device_id)
//	  |<-- welcome{claimed,owner,    |
//	  |     server_key,ice_servers,  |
//	  |     time}                    |
//	  |<-- claim_code{code,expires,  |  only while unclaimed; renewed before expiry
//	  |     url}                     |
//	  |<-- claimed{owner}            |  when the owner enters the code
//
// A device ID is the first 16 bytes of SHA-256 of the Ed25519 public key,
// lower-case base32 without padding (26 characters): random and not
// enumerable. A claimed device ID is never re-bound to another key.
// server_key is the rendezvous's Ed25519 token-signing key; the agent pins it
// when first claimed and checks every viewer token against it. time is the
// rendezvous's clock (RFC 3339); a recorder whose clock reset at boot checks
// token expiry against it rather than its own.
//
// # Viewer flow
//
//	viewer             rendezvous                 agent
//	  | open{device,camera,stream,token?} -->|            |
//	  |<-- session{session,ice_servers}      |            |
//	  | offer{session,sdp}                -->| offer{session,camera,stream,sdp,token,trickle,   |
//	  |                                      |       ice_servers} -->|
//	  |<-- answer{session,sdp}               |<-- answer{session,sdp}                           |
//	  | candidate{session,candidate,...} <-->|<--> candidate{...}                               |
//	  | bye{session,reason}              <-->|<--> bye{session,reason}                          |
//
// Once a session's peer connection is up, the agent reports the candidate pair
// it uses with path{session,relayed,local,remote}; the rendezvous keeps it for
// the owner's audit log and does not forward it.
//
// The viewer authenticates with the session cookie of a logged-in owner, or
// with a viewer token in open.token. The rendezvous checks the viewer may see
// the camera, mints a short-lived viewer token scoped to that device and camera
// and passes it to the agent inside offer.token; the agent verifies it again
// against the pinned key before answering. The viewer's offer is recvonly; the
// agent answers with one video track (and one audio track when the camera has
// G.711 audio). An empty candidate string means end of candidates. The agent
// sends a session's candidates only after its answer, so a viewer never has
// to hold them; a viewer may trickle its own before the answer, and the agent
// holds those (up to 32 per session) until it has answered. trickle=false
// (WHEP) asks the agent to put all its candidates into the answer.
//
// # Network changes
//
// When a viewer's path breaks (its address changed, its link dropped), it
// restarts ICE on the same session: it opens a new WebSocket (the old one
// may be bound to an address that is gone), sends open{device,camera,token?,
// resume=session}, and after session{session} sends a new offer with new ICE
// credentials. The rendezvous moves the session to the new connection only
// for the same viewer (same share, or the device's owner), and the agent
// answers an offer for a live session as a restart: same tracks, no new
// viewer counted. The viewer repeats the restart every few seconds until the
// path is back; the agent keeps the session until ICE fails for good.
//
// ice_servers in session (to the viewer) and in offer (to the agent) are that
// session's STUN and TURN servers; TURN entries carry credentials minted for
// the session (TURN REST shared secret), so both sides can fall back to the
// same relay.
//
// stream is "main" (full resolution, the default) or "sub" (the camera's
// lower-resolution stream, for grids and weak links).
//
// # Error codes
//
// Errors travel as {"v":1,"type":"error","session":"…","code":"…","message":"…"};
// session is empty when the error is about the connection. The codes:
//
//	bad_message         malformed JSON, wrong field type, missing required field
//	unknown_type        a type this version does not define
//	unsupported_version "v" is not a version this peer speaks
//	too_large           message over MaxMessageSize (Decode; on a socket: close 1009)
//	unauthorized        no or invalid credentials / token
//	forbidden           valid credentials, but not for this device or camera
//	auth_failed         device signature did not verify
//	key_mismatch        device ID known with a different key
//	not_found           no such device, camera or session
//	device_offline      the device is not connected to the rendezvous
//	camera_unreachable  the agent cannot pull the camera's RTSP stream
//	codec_unsupported   the viewer offers no codec the camera sends
//	rate_limited        too many attempts; retry later
//	timeout             the other side did not answer in time
//	internal            a bug or an unexpected failure on the sender's side
//	revoked             the share (viewer token) was revoked; live sessions end with it
//	expired             the viewer token expired; live sessions end with it
//	viewer_cap          the share's cap on concurrent viewers is reached
//
// # Version history
//
//	1  2026-11  first version: device auth and claiming, viewer sessions with
//	            trickle ICE, WHEP forwarding (trickle=false); error codes revoked,
//	            expired and viewer_cap for guest shares, the path message,
//	            welcome.time and offer.ice_servers, open.resume (additions only).
package proto
