// Package protocol is the server side of one SMTP session (RFC 5321, with
// the ESMTP extensions PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES,
// DSN, CHUNKING and SMTPUTF8, of which Config.Withhold can leave out
// 8BITMIME, DSN, CHUNKING and SMTPUTF8): command parser, command table,
// replies, a strict DATA reader and a BDAT reader that feed one body
// path (body.go), so that every rule on a message's content holds
// however it was framed. It
// reads commands from a *bufio.Reader and writes replies to an io.Writer,
// so it runs the same over stdin/stdout (inetd, systemd, tcpserver), a
// net.Conn or a test pipe. It knows nothing of files or the
// environment, and imports nothing from this module but the packages
// domain and ascii.
//
// # A server in a few lines
//
// NewSession takes a Config (start from DefaultConfig), the Client, a
// Policy that decides on recipients and a Delivery that takes messages;
// Serve runs the dialog to its end. PolicyFunc and DeliveryFunc turn
// plain functions into the two: a DeliveryFunc reads each message as a
// stream while the client sends it. See Example_server for a TCP server
// that serves each connection in a session of its own, ExampleDelivery
// for a Delivery that keeps each message in a file, and
// ExampleConfig_checkSender for a policy that refuses senders.
//
// # Hooks
//
// Each step of a session can be hooked, as POE::Component::Server::SMTP's
// events and Net::SMTP::Server's hooks allowed; every hook is optional:
//
//   - the greeting: Config.Greet replaces the 220, or refuses the client
//     with 554 (it then waits for QUIT, RFC 5321 section 3.1) or 421
//     (ExampleConfig_greet);
//   - EHLO and HELO: Config.CheckHelo (RFC 5321 section 4.1.1.1);
//   - MAIL FROM: Config.CheckSender (RFC 5321 section 4.1.1.2);
//   - RCPT TO: Policy.CheckRecipient (RFC 5321 section 4.1.1.3);
//   - the message: Config.CheckHeader sees its header section;
//     Delivery.Begin gets the envelope, MessageWriter.QueueID names the
//     message, and MessageWriter.Commit, or what a DeliveryFunc returns,
//     decides the reply to the end of DATA (RFC 5321 section 4.1.1.4)
//     or to BDAT LAST (RFC 3030 section 2);
//   - the end of the session: Config.OnClose is told what Serve returns
//     and the counts (POE's on_disconnect).
//
// A hook refuses by returning a *Reply. Every such reply is vetted: a
// refusal must be a 4yz or 5yz reply in printable ASCII, or the client
// gets 451 4.3.0, so no hook can make a refusal look like a success. A
// 421 from a hook, the Policy or the Delivery ends the session after the
// reply, as RFC 5321 section 3.8 has it (Serve returns ErrShutdown).
//
// # The session
//
// One table (commands.go) holds every verb: the states it may follow
// (RFC 5321 section 4.1.4; anything else gets 503 5.5.1), whether it ends
// a pipelined group (RFC 2920 section 3.1), its argument check and its
// handler. Handlers return their reply, and one place writes it and
// counts refusals toward Config.MaxErrors. Every fixed reply text is in
// replies.go, so that dialog transcripts (testdata/) compare exactly.
package protocol
