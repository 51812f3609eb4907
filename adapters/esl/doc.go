// Package esl connects callpop to FreeSWITCH over the Event Socket, outbound and inbound modes.
package esl
