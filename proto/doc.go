// Package proto is the signaling contract between device-agent, rendezvous and
// viewers. It is the only thing the binaries share on the wire, so it is written
// down here well enough to build a compatible client from this file alone.
//
// # Transport
//
// Signaling runs over WebSocket (RFC 6455), one JSON object per text frame.
// Devices connect to /ws/device, viewers to /ws/viewer on the rendezvous. A
// rendezvous taking many devices at once (every agent of a node that
// restarted) may refuse the WebSocket upgrade with HTTP 503 and Retry-After
// (seconds): the device waits at least that long, plus its own jitter, and
// dials again. A frame larger than [MaxMessageSize] bytes ends the
// connection with WebSocket close code 1009 (message too big, RFC 6455
// section 7.4.1). Every message is an envelope:
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
//	  |     owner_id,claim,          |
//	  |     server_key,ice_servers,  |
//	  |     time}                    |
//	  |<-- claim_code{code,expires,  |  only while unclaimed; renewed before expiry
//	  |     url}                     |
//	  |<-- claimed{owner,owner_id,   |  when the owner enters the code
//	  |     claim}                   |
//	  |<-- unclaimed{reason}         |  when the owner removes the device
//
// A device ID is the first 16 bytes of SHA-256 of the Ed25519 public key,
// lower-case base32 without padding (26 characters): random and not
// enumerable. A claimed device ID is never re-bound to another key.
// server_key is the rendezvous's Ed25519 token-signing key; the agent pins it
// when first claimed and checks every viewer token against it. time is the
// rendezvous's clock (RFC 3339); a recorder whose clock reset at boot checks
// token expiry against it rather than its own, but only believes a time after
// its own build and within the validity of the TLS certificate the rendezvous
// presented, so whoever speaks for the rendezvous cannot wind the clock back
// to replay expired tokens.
//
// # Ownership
//
// Ownership is the boundary. Each time a device gets an owner the rendezvous
// gives the claim a new random ID (welcome.claim, claimed.claim) and names the
// owner's user ID (owner_id). Every viewer token carries the owner and claim
// it was issued under (JWT claims "own" and "clm"); the rendezvous and the
// agent both refuse a token whose own/clm differ from the device's current
// ones, so removing a device (unclaimed), or its claim by someone else, voids
// every share and token issued before, and the agent ends the sessions they
// opened at once. While a device has no owner no session opens on it.
//
// # Viewer flow
//
//	viewer             rendezvous                 agent
//	  | open{device,camera,stream?,token?,   |            |
//	  |      resume?,ref?}                -->|            |
//	  |<-- session{session,ice_servers,ref}  |            |
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
// Field names, exactly as on the wire: open{device, camera, stream, token,
// resume, ref}; session{session, ice_servers, ref}; offer{session, sdp} from
// the viewer (the rendezvous adds camera, stream, token, trickle and
// ice_servers for the agent); answer{session, sdp}; candidate{session,
// candidate, sdp_mid, sdp_mline_index} with candidate the "candidate:…"
// attribute of RTCIceCandidate.candidate, sdp_mid its sdpMid and
// sdp_mline_index its sdpMLineIndex; bye{session, reason}; error{session,
// code, message, ref}. ice_servers is a list of {urls, username?,
// credential?}, as RTCIceServer.
//
// One socket may carry several sessions at once (a grid of cameras opens
// one per tile): every message after open names its session. Opens are
// answered in order, but to match a refusal to its open without relying on
// that, put a label of your choosing (up to 64 bytes) in open.ref: the
// session or the error that answers the open carries the same ref. An error
// about a live session carries its session instead.
//
// Either side may end a session with bye; a bye is never answered, and the
// session ID is dead once it is sent or received. The agent sends bye when
// the peer connection fails or does not connect within 10 s of the answer;
// the rendezvous sends an error (revoked, expired, unauthorized,
// device_offline, timeout) when it ends one. A session that sends no offer
// within 10 s of its session message is ended with error timeout.
//
// Keepalive: the server sends a WebSocket ping every 15 s and closes a
// socket from which it has had no pong for 45 s (browsers answer pings by
// themselves). There is no other idle timeout; a socket without sessions may
// stay open.
//
// The viewer authenticates with the session cookie of a logged-in owner (or
// Authorization: Bearer with the owner's session token on the upgrade), or
// with a viewer token in open.token. When both are present, open.token
// wins: a guest link opened in a browser that is also signed in acts as the
// guest. An owner's sign-in must still be active at each open and resume:
// signing out ends the sessions it opened. The rendezvous checks the viewer may see
// the camera, mints a short-lived viewer token scoped to that device and camera
// and passes it to the agent inside offer.token; the agent verifies it again
// against the pinned key before answering. The viewer's offer is recvonly; the
// agent answers with one video track, and one audio track only when the
// camera has G.711 audio and the offer has an audio section: a viewer that
// wants sound must offer audio (a recvonly audio transceiver). An empty candidate string means end of candidates. The agent
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
// A viewer socket that drops without a close frame keeps its sessions at the
// rendezvous for a grace (10 s by default) so that a resume on a new socket
// finds them; a socket closed on purpose (close code 1000, 1001, or none)
// ends its sessions at once.
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
// A token for another device is forbidden, whether or not that device exists;
// a token issued under an earlier claim of the device (before it was removed
// or changed hands) is revoked; a well-signed token that is not on record at
// the rendezvous is unauthorized. rate_limited also answers an open past the
// per-address or per-token budget (a burst of 20, then one a second), an
// agent that serves its max_viewers (it keeps one slot for the owner), and
// a message past its socket's rate (viewers: 400 at once, then 50 a second;
// agents: 2000, then 500): that message is dropped, the socket stays open.
//
// # Version history
//
//	1  2026-11  first version: device auth and claiming, viewer sessions with
//	            trickle ICE, WHEP forwarding (trickle=false); error codes revoked,
//	            expired and viewer_cap for guest shares, the path message,
//	            welcome.time and offer.ice_servers, open.resume (additions only);
//	            2026-12: welcome.owner_id and welcome.claim, claimed.owner_id and
//	            claimed.claim, the unclaimed message, open.ref echoed in
//	            session.ref and error.ref; viewer tokens carry own and clm
//	            (additions; tokens without them are refused).
package proto
