"""The model summary table without FLOPs.

Lightning's ``RichModelSummary`` always prints a FLOPs column and a "Total FLOPs" line, which
are 0 unless the module defines ``example_input_array`` (a GAN's forward is not one call: they
would mean nothing); this prints the same table and parameter counts without them.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count


class ModelSummary(RichModelSummary):
    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name or " ", justify="left" if name in ("Name", "Type", "Mode", " ") else "right")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        console.print(f"Trainable params: {get_human_readable_count(int(trainable_parameters))}   "
                      f"Non-trainable params: {get_human_readable_count(int(total_parameters - trainable_parameters))}   "
                      f"Total: {get_human_readable_count(int(total_parameters))} "
                      f"({get_formatted_model_size(model_size)} MB)")


__all__ = ["ModelSummary"]
