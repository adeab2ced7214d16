// The reference of this server's own /openapi.json; "Try it out" calls this server.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
