//! UDP sockets (RFC 768): bounded queues of datagrams with their addresses.
