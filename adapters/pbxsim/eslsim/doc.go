// Package eslsim is a protocol-faithful FreeSWITCH Event Socket simulator
// (inbound and outbound modes) replaying the bytes recorded from FreeSWITCH 1.10.
package eslsim
