/* Milepost portal: the photo viewer and polite auto-refresh. Loaded from 'self' with the
   CSP nonce; the page works without it (photos are plain links, forms plain posts). */
(function () {
  "use strict";

  /* Copy buttons (the share links): shown only where the clipboard can be written. */
  if (navigator.clipboard && window.isSecureContext) {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy-from]"), function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var field = document.getElementById(button.dataset.copyFrom);
        navigator.clipboard.writeText(field.value).then(function () {
          var label = button.textContent;
          button.textContent = button.dataset.copied;
          setTimeout(function () { button.textContent = label; }, 2000);
        });
      });
    });
  }

  /* Photos: a <dialog> viewer with previous/next buttons, arrow keys and swipe. */
  var dialog = document.getElementById("lightbox");
  if (dialog && typeof dialog.showModal === "function") {
    var img = dialog.querySelector(".lightbox__img");
    var caption = dialog.querySelector(".lightbox__caption");
    var count = dialog.querySelector(".lightbox__count");
    var links = [];
    var index = 0;
    var opener = null;

    var show = function (i) {
      index = (i + links.length) % links.length;
      var link = links[index];
      img.src = link.href;
      img.alt = link.dataset.caption || "";
      caption.textContent = link.dataset.caption || "";
      count.textContent = (index + 1) + " / " + links.length;
    };

    document.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-lightbox]");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      links = Array.prototype.slice.call(document.querySelectorAll("a[data-lightbox]"));
      opener = link;
      show(links.indexOf(link));
      dialog.showModal();
    });
    dialog.querySelector(".lightbox__prev").addEventListener("click", function () { show(index - 1); });
    dialog.querySelector(".lightbox__next").addEventListener("click", function () { show(index + 1); });
    dialog.querySelector(".lightbox__close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("keydown", function (event) {
      if (event.key === "ArrowLeft") { show(index - 1); event.preventDefault(); }
      if (event.key === "ArrowRight") { show(index + 1); event.preventDefault(); }
    });
    /* A click on the backdrop (the dialog itself, outside its content) closes it. */
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) dialog.close();
    });
    var startX = null;
    dialog.addEventListener("pointerdown", function (event) { startX = event.clientX; });
    dialog.addEventListener("pointerup", function (event) {
      if (startX === null) return;
      var dx = event.clientX - startX;
      startX = null;
      if (Math.abs(dx) > 50) show(dx < 0 ? index + 1 : index - 1);
    });
    dialog.addEventListener("close", function () {
      img.removeAttribute("src");
      if (opener && document.contains(opener)) opener.focus();
    });
  }

  /* Auto-refresh: polled parts send their last ETag and keep the DOM on 304; a part
     holding a form the customer is typing in is not replaced. */
  if (window.htmx) {
    var etags = {};
    htmx.config.responseHandling.unshift({ code: "304", swap: false });
    /* The CSP forbids style attributes, so htmx must not carry them across a swap
       (an empty one left by a browser or a test driver would be refused). */
    htmx.config.attributesToSettle = ["class", "width", "height"];
    var isPoll = function (detail) {
      return Boolean(detail.elt && detail.elt.id && detail.elt.hasAttribute("hx-trigger") &&
        detail.requestConfig && detail.requestConfig.verb === "get");
    };
    document.body.addEventListener("htmx:configRequest", function (event) {
      var elt = event.detail.elt;
      if (event.detail.verb === "get" && elt && etags[elt.id]) {
        event.detail.headers["If-None-Match"] = etags[elt.id];
      }
    });
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var detail = event.detail;
      if (!isPoll(detail)) return;
      var busy = Array.prototype.some.call(
        detail.target.querySelectorAll("input, textarea, select"),
        function (field) {
          return field === document.activeElement ||
            (field.type !== "hidden" && field.type !== "submit" && field.value !== field.defaultValue);
        }
      );
      if (detail.xhr.status === 304 || busy) detail.shouldSwap = false;
      /* Remember the version only when it is the one shown. */
      var etag = detail.xhr.getResponseHeader("ETag");
      if (etag && detail.shouldSwap) etags[detail.elt.id] = etag;
    });
  }
})();
