// The Thrift interface of the helloworld demo apps (`helloworld -protocol thrift`
// and `helloworld-client -protocol thrift`), for documentation: nothing is
// generated from this file. The Rust encoding is written by hand in
// `src/greeter.rs`.
//
// The wire format is the one Linkerd 1.x's thrift router expects by default:
// framed transport (each message preceded by its length, a 4-byte big-endian
// integer) and the strict binary protocol. Old non-strict binary calls are
// accepted too; replies are always strict.
namespace rs helloworld

service Greeter {
  // This instance's text (`-text`, or $TARGET_WORLD, then " (<$POD_IP>)"
  // when set); then, when the instance has a -target, a space and the
  // target's answer to greet(name); then "!". For example
  // "Hello (10.0.1.5) world (10.0.2.7)!!". `name` is only passed on to the
  // target. Failures (injected ones, and failed calls to the target) are
  // TApplicationException INTERNAL_ERROR (6) replies.
  string greet(1: string name)
}
