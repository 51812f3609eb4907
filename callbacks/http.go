package callbacks

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/callpop/callpop/internal/jsonbody"
)

// Handler serves POST /v1/callbacks and GET and DELETE
// /v1/callbacks/{id}. It checks no credentials: main mounts it behind the
// API keys' scope callbacks.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/callbacks", s.handleSubmit)
	mux.HandleFunc("GET /v1/callbacks/{id}", s.handleGet)
	mux.HandleFunc("DELETE /v1/callbacks/{id}", s.handleCancel)
	mux.HandleFunc("/v1/callbacks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "POST")
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Msg: "use POST"})
	})
	mux.HandleFunc("/v1/callbacks/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "GET, DELETE")
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Msg: "use GET or DELETE"})
	})
	return mux
}

func (s *Service) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req Request
	if e := jsonbody.Decode(w, r, maxBodyBytes, &req); e != nil {
		if e.Status != http.StatusUnsupportedMediaType {
			requestsTotal.WithLabelValues("invalid").Inc()
		}
		if strings.HasPrefix(e.Msg, "unknown field") {
			e.Msg += " (number, name, when, queue, note)"
		}
		writeError(w, &Error{Status: e.Status, Field: e.Field, Msg: e.Msg})
		return
	}
	st, created, err := s.Submit(r.Context(), req)
	if err != nil {
		writeError(w, s.httpError(err))
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/v1/callbacks/"+st.ID)
	}
	writeJSON(w, code, st)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	st, ok, err := s.Get(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, s.httpError(err))
	case !ok:
		writeError(w, &Error{Status: http.StatusNotFound, Field: "id", Msg: "no such callback request"})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// handleCancel: 204 for a pending request (now cancelled); 202 with the
// status for one being dialled (no further attempt; the one under way goes
// on); 409 with the status for one that is over; 404 for none.
func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	st, ok, err := s.Cancel(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrTerminal):
		writeJSON(w, http.StatusConflict, struct {
			Error string `json:"error"`
			Status
		}{"the request is " + string(st.State) + ": nothing to cancel", st})
	case err != nil:
		writeError(w, s.httpError(err))
	case !ok:
		writeError(w, &Error{Status: http.StatusNotFound, Field: "id", Msg: "no such callback request"})
	case st.State == StateDialing:
		writeJSON(w, http.StatusAccepted, st)
	default:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	}
}

// httpError turns err into what the client is told; a store failure is a
// 503 whose detail stays in the log.
func (s *Service) httpError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	s.storeWarn.Warn(s.log, "callbacks: request failed", "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Msg: "callback requests are unavailable; try again later"}
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	jsonbody.WriteError(w, e.Status, e.Field, e.Msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) { jsonbody.WriteJSON(w, code, v) }
