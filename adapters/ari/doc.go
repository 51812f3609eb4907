// Package ari connects callpop to Asterisk over ARI.
package ari
