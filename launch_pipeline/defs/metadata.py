"""Asset metadata helpers: row counts, column schemas, previews and plots."""

from __future__ import annotations

import base64
import io

import dagster as dg
import pandas as pd

from launch_pipeline.warehouse import table_summary


def table_metadata(
    con,
    table: str,
    preview_rows: int = 5,
    rows: int | None = None,
    preview_where: str | None = None,
) -> dict:
    """Standard metadata for a warehouse table or view: row count, schema, preview, table name
    (``rows`` / ``preview_where``: see :func:`launch_pipeline.warehouse.table_summary`)."""
    summary = table_summary(con, table, preview_rows, rows=rows, preview_where=preview_where)
    preview = summary.preview
    comments = column_comments(con, table)
    return {
        "dagster/row_count": summary.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=n, type=t, description=comments.get(n))
                for n, t in summary.schema
            ]
        ),
        "dagster/table_name": f"warehouse.main.{table}",
        "preview": markdown_table(preview),
    }


def column_comments(con, table: str) -> dict[str, str]:
    """The column descriptions stored with a warehouse table (``COMMENT ON COLUMN``)."""
    rows = con.execute(
        "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ? "
        "AND comment IS NOT NULL AND comment <> ''",
        [table],
    ).fetchall()
    return {n: c for n, c in rows}


def png_file_markdown(path, title: str = "plot") -> dg.MetadataValue:
    """A PNG file embedded in markdown (shown inline in the asset's metadata)."""
    from pathlib import Path

    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def markdown_table(df: pd.DataFrame, max_rows: int = 20) -> dg.MetadataValue:
    shown = df.head(max_rows).copy()
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = shown[col].map(lambda v: str(v)[:80] if v is not None else v)
    return dg.MetadataValue.md(shown.to_markdown(index=False))


def png_markdown(fig, title: str = "plot") -> dg.MetadataValue:
    """A matplotlib figure embedded in markdown as a base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buf.getvalue()).decode()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
