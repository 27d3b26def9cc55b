"""Static files of the control plane's web page ``/ui`` (package data: index.html, ui.js, ui.css)."""
