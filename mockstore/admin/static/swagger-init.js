// Swagger UI (served from the swagger-ui-py package's files) on the learned API. Its first
// server is the proxy, so "try it out" goes through mockstore and is answered as the mode says.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/admin/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
  });
});
