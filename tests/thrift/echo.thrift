// The service the Thrift interop peers (peer.py) serve and call; see tests/thrift_interop.rs.

namespace py plexus_echo

exception Oops {
  1: string why
}

service Echo {
  // A plain round trip.
  string echo(1: string msg),
  // A void reply (empty result struct).
  void ping(),
  // Always throws the declared exception Oops(why): a REPLY whose result has field 1.
  string fail(1: string why) throws (1: Oops oops),
  // The server raises an undeclared error, so the reply is an EXCEPTION message
  // carrying a TApplicationException (INTERNAL_ERROR).
  string crash(1: string why),
  // No reply at all.
  oneway void notify(1: string msg),
  // How many notify() calls the server has seen.
  i32 notified(),
  // Echoes bytes, for large messages.
  binary blob(1: binary data),
}
