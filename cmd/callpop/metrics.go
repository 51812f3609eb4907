package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var configReloads = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "callpop_config_reloads_total",
	Help: "Config file reloads by result (ok, error).",
}, []string{"result"})
