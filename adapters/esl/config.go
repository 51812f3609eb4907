package esl

// Config is the `pbx.freeswitch` section of callpop.yaml. mapstructure tags are the YAML
// keys; unknown keys are rejected at load.
type Config struct{}

// DefaultConfig returns the defaults documented in config.example.yaml.
func DefaultConfig() Config { return Config{} }

// Validate checks the section as a whole; errors name the key ("pbx.freeswitch.x: why").
func (c *Config) Validate() error { return nil }
