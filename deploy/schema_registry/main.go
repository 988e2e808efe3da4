// The local and test schema registry: Conduit's Schema Registry (a Confluent-compatible
// REST API) with in-memory storage, for `make demo` in Avro and the integration tests.
// Production teams point riverrun at their own registry (Confluent, Apicurio, Karapace...).
//
//	riverrun-schema-registry -addr 127.0.0.1:18081 [-tls-cert F -tls-key F [-tls-client-ca F]]
//
// HTTP basic auth is on when REGISTRY_BASIC_AUTH_USER and REGISTRY_BASIC_AUTH_PASSWORD are
// set (from the environment, never flags, so that they do not show in `ps`).
package main

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/conduitio/conduit-commons/database/inmemory"
	schemaregistry "github.com/conduitio/conduit-schema-registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "host:port to listen on")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this certificate chain (PEM)")
	keyFile := flag.String("tls-key", "", "the key of -tls-cert (PEM)")
	clientCA := flag.String("tls-client-ca", "", "require client certificates signed by this CA (PEM)")
	flag.Parse()

	registry, err := schemaregistry.NewSchemaRegistry(&inmemory.DB{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	schemaregistry.NewServer(slog.Default(), registry).RegisterHandlers(mux)
	handler := confluentContentType(mux)
	user, password := os.Getenv("REGISTRY_BASIC_AUTH_USER"), os.Getenv("REGISTRY_BASIC_AUTH_PASSWORD")
	if user != "" || password != "" {
		handler = basicAuth(user, password, handler)
	}

	server := &http.Server{Addr: *addr, Handler: handler}
	if *clientCA != "" {
		pem, err := os.ReadFile(*clientCA)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("%s: no PEM certificate in it", *clientCA)
		}
		server.TLSConfig = &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	}
	if *certFile != "" || *keyFile != "" {
		err = server.ListenAndServeTLS(*certFile, *keyFile)
	} else if *clientCA != "" {
		log.Fatal("-tls-client-ca needs -tls-cert and -tls-key")
	} else {
		err = server.ListenAndServe()
	}
	log.Fatal(err)
}

// confluentContentType answers with Confluent's media type, as its registry does (the
// library's handlers set none, and some clients refuse text/plain for JSON).
func confluentContentType(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		next.ServeHTTP(w, r)
	})
}

// basicAuth refuses a request without the right user and password with 401 and a
// Confluent-style error body.
func basicAuth(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="schema registry"`)
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error_code":401,"message":"Unauthorized"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
