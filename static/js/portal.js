/* Milepost portal: the photo viewer and polite auto-refresh. Loaded from 'self' with the
   CSP nonce; the page works without it (photos are plain links, forms plain posts). */
(function () {
  "use strict";

  /* Copy buttons (the share links): shown only where the clipboard can be written. */
  if (navigator.clipboard && window.isSecureContext) {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy-from]"), function (button) {
      button.hidden = false;
      /* The label's nodes, not its text: it holds a visually hidden part (which link).
         Kept once, so a second click while "Copied" shows does not keep "Copied". */
      var label = Array.prototype.slice.call(button.childNodes);
      var timer = null;
      button.addEventListener("click", function () {
        var field = document.getElementById(button.dataset.copyFrom);
        navigator.clipboard.writeText(field.value).then(function () {
          button.textContent = button.dataset.copied;
          clearTimeout(timer);
          timer = setTimeout(function () { button.replaceChildren.apply(button, label); }, 2000);
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
     holding a form the customer is typing in is not replaced. A part that is replaced
     keeps what the customer did to it: each <details> (matched by its id) stays open or
     closed as they left it, and the focus stays on the same control. */
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
    var FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";
    var kept = new WeakMap(); /* old part -> what its swap must give back to the new one */
    var remember = function (part) {
      var open = {};
      Array.prototype.forEach.call(part.querySelectorAll("details[id]"), function (details) {
        open[details.id] = details.open;
      });
      /* htmx gives the focus back itself when the focused element has an id; anything
         else (a summary, a rating button, a link) is found again by its place among the
         focusable elements of its nearest ancestor with an id. */
      var focus = null;
      var active = document.activeElement;
      if (active && active !== part && part.contains(active) && !active.id) {
        var holder = active.parentElement.closest("[id]");
        if (holder && part.contains(holder)) {
          focus = {
            holder: holder.id,
            index: Array.prototype.indexOf.call(holder.querySelectorAll(FOCUSABLE), active)
          };
        }
      }
      return { open: open, focus: focus };
    };
    var restore = function (state) {
      Object.keys(state.open).forEach(function (id) {
        var details = document.getElementById(id);
        if (details && details.tagName === "DETAILS") details.open = state.open[id];
      });
      if (state.focus && state.focus.index >= 0) {
        var holder = document.getElementById(state.focus.holder);
        var target = holder && holder.querySelectorAll(FOCUSABLE)[state.focus.index];
        if (target) target.focus({ preventScroll: true });
      }
    };
    /* A part the customer's own action replaced (a task ticked off, a rating, a message
       sent) took the focused button with it, and the focus fell to the page's body: a
       keyboard or screen reader user lost their place. It goes to what the new part
       says of the action: a field to correct, then its status or error, looked for
       nearest the button first (its article, not another appointment's), then the
       part's heading, then the part itself. */
    var focusAfter = function (near, part) {
      var pick = null;
      near.concat([part.id]).some(function (id) {
        var scope = document.getElementById(id);
        pick = scope && (scope.querySelector("[aria-invalid='true']") ||
          scope.querySelector("[role=status], [role=alert]"));
        return Boolean(pick);
      });
      pick = pick || part.querySelector("h2, h3") || part;
      if (!pick.matches(FOCUSABLE)) pick.setAttribute("tabindex", "-1");
      pick.focus();
    };
    var idsUp = function (from, part) {
      var ids = [];
      for (var node = from.parentElement; node && node !== part; node = node.parentElement) {
        if (node.id) ids.push(node.id);
      }
      return ids;
    };
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var detail = event.detail;
      if (!isPoll(detail)) {
        if (detail.target && detail.target.id && detail.target.contains(document.activeElement)) {
          kept.set(detail.target, {
            own: detail.target.id, near: idsUp(document.activeElement, detail.target)
          });
        }
        return;
      }
      var busy = Array.prototype.some.call(
        detail.target.querySelectorAll("input, textarea, select"),
        function (field) {
          return field === document.activeElement ||
            (field.type !== "hidden" && field.type !== "submit" && field.value !== field.defaultValue);
        }
      );
      if (detail.xhr.status === 304 || busy) detail.shouldSwap = false;
      if (detail.shouldSwap) kept.set(detail.target, remember(detail.target));
      /* Remember the version only when it is the one shown. */
      var etag = detail.xhr.getResponseHeader("ETag");
      if (etag && detail.shouldSwap) etags[detail.elt.id] = etag;
    });
    /* Fired on the new part, in the same task as the swap: nothing is drawn in between.
       Its detail still names the part it replaced. */
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var old = event.detail.target;
      var state = old && kept.get(old);
      if (!state) return;
      kept.delete(old);
      if (state.own) {
        /* htmx gives the focus back itself to an element with an id. */
        var active = document.activeElement;
        if (active && active !== document.body) return;
        var part = document.getElementById(state.own);
        if (part) focusAfter(state.near, part);
        return;
      }
      restore(state);
    });
  }
})();
