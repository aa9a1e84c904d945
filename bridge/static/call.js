// The call page's behaviour; see bridge/callpage.py.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("config").textContent);
  var params = new URLSearchParams(location.hash.slice(1));
  var token = params.get("token"), end = params.get("end");
  // The token has done its job once read: keep it out of history and screenshots.
  history.replaceState(null, "", location.pathname);

  var stateLine = document.getElementById("state");
  var muteButton = document.getElementById("mute");
  var endButton = document.getElementById("end");
  var room = null, connected = false, finished = false, poller = null;
  var TEXTS = {
    "connecting": "Connecting…", "in-call": "In call", "sate-left": "SATE left the call",
    "ended": "Call ended", "failed": "Could not connect to the call"
  };

  function show(state, detail) {
    stateLine.dataset.state = state;
    stateLine.textContent = TEXTS[state] + (detail ? " (" + detail + ")" : "");
  }

  function post(path) {
    return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                         body: JSON.stringify({ end: end }) });
  }

  function finish(state) {
    if (finished) return;
    finished = true;
    show(state);
    muteButton.disabled = endButton.disabled = true;
    if (poller) clearInterval(poller);
    if (room) room.disconnect();
  }

  endButton.addEventListener("click", function () {
    post("/call/end").finally(function () { finish("ended"); });
  });

  muteButton.addEventListener("click", function () {
    if (!room) return;
    var enabled = room.localParticipant.isMicrophoneEnabled;
    room.localParticipant.setMicrophoneEnabled(!enabled).then(function () {
      muteButton.textContent = enabled ? "Unmute" : "Mute";
    });
  });

  // The helpdesk may end the call (close_call_support, sate_left_call): ask the bridge.
  poller = setInterval(function () {
    post("/call/state").then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.state === "sate_left") finish("sate-left");
        else if (answer.state === "closed") finish("ended");
      }).catch(function () { /* the next look will tell */ });
  }, 2000);

  if (!token || !end) { finish("failed"); show("failed", "this link is incomplete"); return; }
  if (typeof LivekitClient === "undefined") {
    show("failed", "the call software did not load");
    return;
  }
  room = new LivekitClient.Room();
  // Only a call that was up can drop; a failed connect leaves "End call" usable, so the
  // customer can still tell the helpdesk they are gone.
  room.on(LivekitClient.RoomEvent.Disconnected, function () { if (connected) finish("ended"); });
  room.connect(config.livekitUrl, token).then(function () {
    connected = true;
    show("in-call");
    muteButton.disabled = false;
    return room.localParticipant.setMicrophoneEnabled(true);
  }).catch(function (error) {
    if (!finished) show("failed", error && error.message ? error.message : "");
  });
})();
