import { useId, useRef, useState } from "react";

/**
 * CopyCommand shows a shell command with a button that copies it. Where the
 * clipboard is not available (plain HTTP), it selects the text instead.
 */
export function CopyCommand({ command }: { command: string }) {
  const [status, setStatus] = useState("");
  const codeRef = useRef<HTMLElement>(null);
  const id = useId();

  async function copy() {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(command);
      setStatus("Copied to the clipboard.");
    } catch {
      const el = codeRef.current;
      const selection = window.getSelection();
      if (el && selection) {
        const range = document.createRange();
        range.selectNodeContents(el);
        selection.removeAllRanges();
        selection.addRange(range);
      }
      setStatus("Selected: press Ctrl+C (⌘C on a Mac) to copy.");
    }
  }

  return (
    <div className="copy-command">
      <pre id={id}>
        <code ref={codeRef}>{command}</code>
      </pre>
      <div className="copy-row">
        <button type="button" className="button" onClick={copy} aria-describedby={id}>
          Copy command
        </button>
        <span role="status" className="muted">
          {status}
        </span>
      </div>
    </div>
  );
}
