"""From recordings and journals to parameters: the follow-up analysis of signals (``followups``), the fees
it assumes (``fees``), equity and drawdown (``equity``), the HTML report (``html``) and the parameter search
over replays (``space``, ``evaluate``, ``optimize``, ``backends``). Everything here reads journals and
recordings; nothing here trades."""
