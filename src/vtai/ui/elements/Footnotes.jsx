// The citations of an answer as footnotes: "[n] file name"; a click opens (or closes) the
// passage the answer quotes. Props (injected by Chainlit): notes = [{number, filename, passage}].
import { useState } from "react";

export default function Footnotes() {
  const [open, setOpen] = useState(null);
  return (
    <div className="footnotes flex flex-col gap-1 text-sm text-muted-foreground border-t border-border pt-2 mt-1">
      {props.notes.map((note) => (
        <div key={note.number} className="footnote">
          <button
            type="button"
            className="footnote-link text-left hover:underline"
            aria-expanded={open === note.number}
            onClick={() => setOpen(open === note.number ? null : note.number)}
          >
            <span className="font-semibold">[{note.number}]</span> {note.filename}
          </button>
          {open === note.number && (
            <blockquote className="footnote-passage mt-1 ml-4 pl-3 border-l-2 border-border whitespace-pre-wrap text-foreground">
              {note.passage || "(the passage was not sent with the search results)"}
            </blockquote>
          )}
        </div>
      ))}
    </div>
  );
}
