package tracker

import "net/http"

// AdminHandler serves /api.
func (s *Server) AdminHandler() http.Handler {
	return http.NotFoundHandler()
}

func (s *Server) dashboardRoutes(mux *http.ServeMux) {}
