import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { StreamingDemo } from "./components/StreamingDemo";
import { chatterboxAPI } from "./lib/api";
import "./style.css";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <StreamingDemo api={chatterboxAPI} />
  </StrictMode>,
);
