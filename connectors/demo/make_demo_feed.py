"""Regenerate ``demo_feed.jsonl``: synthetic financial headlines for the built-in demo.

Every story is invented for the demo (no real events). Two hours of market news, with a planted
negative burst about the fictional Halvorsen Bancorp ($HLVB) and regional-bank credit stress around
minute 40, syndicated copies ("UPDATE 1-", "REFILE-", outlet suffixes) to exercise near-duplicate
detection, and cashtags / exchange prefixes to exercise ticker extraction.

    python connectors/demo/make_demo_feed.py   # rewrites demo_feed.jsonl next to this file
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 11, 20, 13, 30, tzinfo=timezone.utc)
SPAN_MIN = 120
SOURCES = ("demo-wire", "demo-markets", "demo-business", "demo-pr")

# (tickers, headline, body)
STORIES: list[tuple[list[str], str, str]] = [
    (
        ["AAPL"],
        "Apple shares edge higher as holiday iPhone orders track ahead of last year",
        "Supply-chain checks point to steady demand for the latest models heading into the holiday quarter.",
    ),
    (
        ["MSFT"],
        "Microsoft (NASDAQ: MSFT) wins multi-year cloud contract with European carmaker",
        "The agreement covers data-centre capacity and AI tooling for the carmaker's design teams.",
    ),
    (["NVDA"], "Nvidia suppliers signal another quarter of record data-centre shipments", ""),
    (["AMZN"], "Amazon expands same-day delivery to 40 more mid-sized US cities", ""),
    (
        ["GOOGL"],
        "Alphabet faces fresh EU questionnaire over search advertising practices",
        "Regulators asked advertisers how auction changes affected their costs.",
    ),
    (["META"], "Meta's ad revenue growth seen steady as marketers lean on AI targeting tools", ""),
    (["TSLA"], "Tesla cuts prices on two models in China as competition intensifies", ""),
    (["JPM"], "JPMorgan (NYSE: JPM) sees investment-banking fees up about 10% this quarter", ""),
    (["BAC"], "Bank of America card delinquencies hold flat in October data", ""),
    (["XOM"], "Exxon Mobil raises Permian output target after well productivity gains", ""),
    (["CVX"], "Chevron sets 2027 capital budget at low end of guidance range", ""),
    (
        ["PFE"],
        "Pfizer's experimental obesity pill meets main goal in mid-stage trial",
        "Patients lost a meaningful share of body weight over 26 weeks; the company plans a late-stage study.",
    ),
    (["MRK"], "Merck to buy biotech developer in $1.2 billion all-cash deal", ""),
    (["JNJ"], "Johnson & Johnson medtech unit recalls surgical stapler batch as a precaution", ""),
    (["WMT"], "Walmart lifts full-year sales outlook on grocery strength and online growth", ""),
    (["TGT"], "Target shares slide after retailer trims holiday forecast, citing cautious shoppers", ""),
    (["KO"], "Coca-Cola $KO raises dividend for the 64th straight year", ""),
    (["PEP"], "PepsiCo to close two snack plants as volumes soften in North America", ""),
    (["DIS"], "Disney streaming unit posts another profitable quarter as subscribers grow", ""),
    (["NFLX"], "Netflix ad tier passes 90 million monthly active users, company says", ""),
    (["BA"], "Boeing delivers 48 jets in October, highest monthly total this year", ""),
    (["LMT"], "Lockheed Martin wins $2.1 billion Army missile contract", ""),
    (["CAT"], "Caterpillar dealer inventories fall as construction demand cools", ""),
    (["GE"], "GE Aerospace raises engine delivery forecast on strong airline demand", ""),
    (["INTC"], "Intel delays opening of Ohio chip plant again, pushing timeline to 2031", ""),
    (["AMD"], "AMD unveils new data-centre accelerator, claims performance lead on inference", ""),
    (["ORCL"], "Oracle shares jump as cloud bookings surge on AI infrastructure deals", ""),
    (["CRM"], "Salesforce to cut about 1,000 jobs in restructuring of sales teams", ""),
    (["ADBE"], "Adobe beats quarterly estimates but subscription guidance disappoints", ""),
    (["IBM"], "IBM (NYSE: IBM) agrees to acquire data-management software maker", ""),
    (["V"], "Visa cross-border volumes grow 14% as travel spending stays firm", ""),
    (["MA"], "Mastercard to pay $100 million to settle interchange claims", ""),
    (["GS"], "Goldman Sachs trading desk posts strongest November in a decade, sources say", ""),
    (["MS"], "Morgan Stanley wealth unit draws $40 billion of net new assets", ""),
    (["C"], "Citigroup completes sale of Mexican consumer unit stake", ""),
    (["WFC"], "Wells Fargo regulators lift one of the remaining consent orders", ""),
    (["UNH"], "UnitedHealth shares fall as medical cost trends run above plan", ""),
    (["CVS"], "CVS Health reaffirms outlook, shares steady", ""),
    (["HD"], "Home Depot comparable sales decline for a fifth straight quarter", ""),
    (["LOW"], "Lowe's beats profit estimates on pro customer demand", ""),
    (["NKE"], "Nike warns on margins as discounting weighs on wholesale orders", ""),
    (["SBUX"], "Starbucks same-store sales return to growth in the US", ""),
    (["MCD"], "McDonald's value menu lifts traffic, franchisees report", ""),
    (["F"], "Ford recalls 240,000 SUVs over rear-view camera fault", ""),
    (["GM"], "General Motors boosts buyback by $6 billion, keeps guidance", ""),
    (["UBER"], "Uber gross bookings top estimates as delivery business accelerates", ""),
    (["ABNB"], "Airbnb guides to slower nights-booked growth for the first quarter", ""),
    (["PYPL"], "PayPal branded checkout growth improves for a third quarter", ""),
    (["SHOP"], "Shopify merchants report record Black Friday weekend sales", ""),
    (["T"], "AT&T adds more fibre subscribers than expected", ""),
    (["VZ"], "Verizon to raise prices on older unlimited plans next month", ""),
    (["DAL"], "Delta Air Lines sees record Thanksgiving travel, reaffirms guidance", ""),
    (["UAL"], "United Airlines pilots approve new contract", ""),
    (["FDX"], "FedEx to cut 2,000 jobs in Europe as parcel volumes lag", ""),
    (["UPS"], "UPS shares drop after key customer reduces delivery volumes", ""),
    (["COST"], "Costco November comparable sales rise 7.1%", ""),
    (["AVGO"], "Broadcom lands custom AI chip order from another hyperscaler", ""),
    (["QCOM"], "Qualcomm settles licensing dispute with handset maker", ""),
    (["MU"], "Micron says memory prices firming faster than expected", ""),
    (["SNOW"], "Snowflake product revenue beats forecasts; shares rise after hours", ""),
    ([], "US jobless claims fall to 214,000, lowest in two months", ""),
    ([], "Treasury yields climb after stronger-than-expected retail sales data", ""),
    ([], "Fed's Waller says another rate cut is appropriate if inflation keeps easing", ""),
    ([], "Oil prices slip as OPEC+ weighs delaying planned output cuts", ""),
    ([], "Dollar steadies ahead of minutes from the Federal Reserve's last meeting", ""),
    ([], "Gold hits one-week high as traders price in lower rates", ""),
    ([], "US existing home sales rise for second month as mortgage rates ease", ""),
    ([], "European shares open higher, led by autos and miners", ""),
    ([], "Copper rallies on signs of stronger Chinese factory demand", ""),
    ([], "S&P 500 futures flat as investors await big-tech earnings", ""),
    ([], "US consumer sentiment improves more than expected in November", ""),
    ([], "Bitcoin swings after report of new exchange-traded fund filings", ""),
    ([], "Natural gas futures surge on forecasts for colder weather", ""),
    ([], "IPO market heats up as three companies price above range", ""),
    ([], "Corporate bond spreads tighten to narrowest since 2007", ""),
    (["AAPL", "GOOGL"], "Apple and Alphabet extend search default agreement, filing shows", ""),
    (["MSFT", "NVDA"], "Microsoft to spend billions more on Nvidia-powered data centres in Asia", ""),
    (["XOM", "CVX"], "Oil majors' refining margins squeezed by weaker diesel demand", ""),
    (["JPM", "GS", "MS"], "Wall Street banks brace for smaller bonus pools in fixed income", ""),
    (["AMZN"], "Amazon Web Services outage disrupts some customers for two hours", ""),
    (["META"], "Meta fined by Irish regulator over data-transfer practices", ""),
    (["TSLA"], "Tesla robotaxi service expands to two more cities", ""),
    (["NVDA"], "Nvidia shares hit record as analysts raise price targets ahead of results", ""),
    (
        ["NVDA"],
        "Nvidia quarterly revenue beats estimates; data-centre sales up 60%",
        "The chipmaker guided next-quarter revenue above consensus, citing demand for its newest systems.",
    ),
    (["NVDA"], "Nvidia forecast tops expectations as AI spending shows no sign of slowing", ""),
    (["AMD", "NVDA"], "Chip stocks rally after Nvidia results lift sentiment across sector", ""),
    (["BA"], "Boeing wins large widebody order from Gulf carrier", ""),
    (["PFE"], "Pfizer cuts cost-savings target further, shares rise", ""),
    (["LLY"], "Eli Lilly weight-loss drug sales beat estimates again", ""),
    (["ABBV"], "AbbVie raises long-term sales outlook for immunology drugs", ""),
    (["BMY"], "Bristol Myers schizophrenia drug misses goal in add-on trial", ""),
    (["GILD"], "Gilead HIV prevention shot wins European approval", ""),
    (["AMGN"], "Amgen obesity drug data underwhelm investors; shares fall", ""),
    (["MDT"], "Medtronic raises revenue forecast on demand for heart devices", ""),
    (["DE"], "Deere forecasts lower profit as farm equipment demand slumps", ""),
    (["MMM"], "3M settles remaining earplug claims, ending litigation", ""),
    (["HON"], "Honeywell completes spin-off of advanced materials unit", ""),
    (["RTX"], "RTX engine inspections to weigh on airline fleets into next year", ""),
    (["NEE"], "NextEra signs deal to supply power to data centres", ""),
    (["DUK"], "Duke Energy seeks rate increase to fund grid upgrades", ""),
    (["SPG"], "Simon Property raises funds-from-operations outlook", ""),
    (["PLD"], "Prologis warehouse leasing picks up as tenants return", ""),
    (["BLK"], "BlackRock assets hit record $12 trillion", ""),
    (["SCHW"], "Charles Schwab client cash balances stabilise", ""),
    (["AXP"], "American Express card spending rises 9% on travel and dining", ""),
    (["COF"], "Capital One completes integration of acquired card network", ""),
    (["USB"], "U.S. Bancorp to sell $5 billion of securities to reposition balance sheet", ""),
    (["PNC"], "PNC Financial expands in Texas with branch purchase", ""),
    (["AAPL"], "Apple supplier Foxconn reports strong November sales", ""),
    (["AAPL"], "Apple faces antitrust complaint from app developers in India", ""),
    (["MSFT"], "Microsoft Teams price change draws EU scrutiny", ""),
    (["MSFT"], "Microsoft says AI features now used by majority of Office business customers", ""),
    (["AMZN"], "Amazon union vote at North Carolina warehouse fails", ""),
    (["GOOGL"], "Alphabet's Waymo begins driverless rides on freeways", ""),
    (["TSLA"], "Tesla deliveries expected to fall short of estimates, analysts say", ""),
    (["TSLA"], "Tesla energy storage deployments hit quarterly record", ""),
    (["META"], "Meta shares rise after strong early sales of smart glasses", ""),
    (["NFLX"], "Netflix raises prices in several European markets", ""),
    (["INTC"], "Intel wins government award to expand advanced packaging capacity", ""),
    (["INTC"], "Intel loses another senior chip executive to rival", ""),
    (["BA"], "Boeing factory workers ratify contract, ending strike threat", ""),
    (["BA"], "FAA extends cap on Boeing 737 production", ""),
    (["WMT"], "Walmart to open 150 new stores over the next five years", ""),
    (["TGT"], "Target to cut prices on 2,000 items for the holidays", ""),
    (["NKE"], "Nike names new head of China business as sales slump", ""),
    (["SBUX"], "Starbucks baristas strike at dozens of US stores", ""),
    (["DIS"], "Disney theme parks report softer attendance, shares dip", ""),
    (["GS"], "Goldman Sachs to shed consumer lending unit", ""),
    (["JPM"], "JPMorgan's Dimon warns of sticky inflation and high asset prices", ""),
    (["BAC"], "Bank of America raises minimum wage for US employees", ""),
    (["XOM"], "Exxon's Guyana project starts production ahead of schedule", ""),
    (["CVX"], "Chevron to sell Canadian assets for $6.5 billion", ""),
    (["LLY"], "Eli Lilly to build $4 billion plant in Pennsylvania", ""),
    (["MRK"], "Merck cancer drug gets expanded FDA approval", ""),
    (["UNH"], "UnitedHealth CEO steps down; shares tumble", ""),
    (["F"], "Ford EV unit losses widen, company sticks to targets", ""),
    (["GM"], "GM's Cruise unit winds down robotaxi operations", ""),
    ([], "US producer prices rise less than expected in October", ""),
    ([], "ECB policymakers signal December rate cut is likely", ""),
    ([], "China's factory activity expands for first time in six months", ""),
    ([], "Yen weakens past 155 per dollar, raising intervention risk", ""),
    ([], "US 10-year yield falls below 4% for first time since September", ""),
    ([], "Wall Street ends higher as tech rebound offsets bank weakness", ""),
    ([], "Volatility index jumps as investors seek protection", ""),
    ([], "Emerging-market currencies gain as dollar retreats", ""),
    ([], "Brent crude falls to three-month low on demand worries", ""),
    ([], "US housing starts drop more than expected in October", ""),
    ([], "Bank of England holds rates, signals gradual cuts ahead", ""),
    ([], "Small-cap stocks outperform as rate-cut bets build", ""),
]

# A planted negative burst: a fictional regional lender and the read-across to peers.
BURST: list[tuple[list[str], str, str]] = [
    (
        ["HLVB"],
        "Halvorsen Bancorp shares halted after lender flags unexpected loan losses",
        "The regional bank said a review of its commercial real-estate book found impairments well above reserves.",
    ),
    (["HLVB"], "Halvorsen Bancorp (NASDAQ: HLVB) plunges 38% as bad-loan charge wipes out quarterly profit", ""),
    (["HLVB"], "Halvorsen Bancorp withdraws full-year guidance, suspends dividend", ""),
    (["HLVB"], "$HLVB: Moody's places Halvorsen Bancorp ratings on review for downgrade", ""),
    (["HLVB"], "Halvorsen Bancorp depositors move funds as social media rumours spread", ""),
    (["HLVB"], "Halvorsen Bancorp CFO resigns with immediate effect amid loan review", ""),
    (["HLVB"], "Analysts slash price targets on Halvorsen Bancorp, warn capital may need topping up", ""),
    (["HLVB"], "Halvorsen Bancorp says it is exploring strategic options including a capital raise", ""),
    (["HLVB"], "Halvorsen Bancorp bonds tumble to distressed levels", ""),
    (["HLVB"], "Short sellers pile into Halvorsen Bancorp as losses mount", ""),
    (["HLVB"], "Regulators in contact with Halvorsen Bancorp over liquidity, sources say", ""),
    (["HLVB"], "Halvorsen Bancorp discloses regulatory probe into loan-loss accounting", ""),
    (["HLVB"], "Halvorsen Bancorp faces shareholder lawsuit over loan disclosures", ""),
    (["HLVB"], "Halvorsen Bancorp shares extend slide; down 52% on the day", ""),
    (["HLVB", "KRE"], "Regional bank stocks sink as Halvorsen losses revive credit fears", ""),
    (["KRE"], "Regional bank index falls 6%, worst day since 2023 banking turmoil", ""),
    (["KRE"], "Investors dump regional lenders on commercial property loan worries", ""),
    (["HLVB"], "Halvorsen Bancorp loan troubles deepen as second portfolio is flagged", ""),
    (["HLVB"], "S&P cuts Halvorsen Bancorp to junk, outlook negative", ""),
    (["HLVB"], "Halvorsen Bancorp draws on emergency funding facility", ""),
    (["HLVB"], "Halvorsen Bancorp warns of further write-downs in coming quarters", ""),
    (["HLVB"], "Halvorsen Bancorp customers report long queues at branches", ""),
    (["KRE"], "Credit default swaps on regional banks widen sharply after Halvorsen shock", ""),
    (["HLVB"], "Halvorsen Bancorp board weighs sale as share price collapses", ""),
]

SYNDICATION_PREFIXES = ("UPDATE 1-", "UPDATE 2-", "REFILE-", "CORRECTED-")
SYNDICATION_SUFFIXES = (" - Reuters", " | Bloomberg", " - MarketWatch")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]


def _row(rng: random.Random, when: datetime, tickers: list[str], title: str, body: str, source: str) -> dict:
    row: dict = {
        "title": title,
        "published_at": when.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "source": source,
        "url": f"https://news.example.com/{source}/{when:%Y/%m/%d}/{_slug(title)}",
        "tickers": tickers,
    }
    if body:
        row["body"] = body
    return row


def build(seed: int = 20261120) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    # The background flow, spread over the whole two hours, each story told once or twice.
    for tickers, title, body in STORIES:
        for _ in range(2 if rng.random() < 0.25 else 1):
            when = START + timedelta(seconds=rng.uniform(0, SPAN_MIN * 60))
            source = rng.choice(SOURCES)
            rows.append(_row(rng, when, tickers, title, body, source))
    # Syndicated copies: the same story from another outlet a few minutes later.
    for tickers, title, body in rng.sample(STORIES, 30):
        when = START + timedelta(seconds=rng.uniform(0, (SPAN_MIN - 10) * 60))
        rows.append(_row(rng, when, tickers, title, body, "demo-wire"))
        copy = (
            rng.choice(SYNDICATION_PREFIXES) + title if rng.random() < 0.5 else title + rng.choice(SYNDICATION_SUFFIXES)
        )
        rows.append(_row(rng, when + timedelta(minutes=rng.uniform(1, 8)), tickers, copy, body, "demo-markets"))
    # The burst: minutes 40-60 (20-30 s into `make run` at the demo's 120x).
    for i, (tickers, title, body) in enumerate(BURST):
        when = START + timedelta(minutes=40 + i * (20 / len(BURST)) + rng.uniform(0, 0.5))
        rows.append(_row(rng, when, tickers, title, body, rng.choice(SOURCES[:3])))
    rows.sort(key=lambda r: r["published_at"])
    # Same title told twice by the same source would share a URL; make each telling distinct.
    seen: dict[str, int] = {}
    for r in rows:
        n = seen.get(r["url"], 0)
        seen[r["url"]] = n + 1
        if n:
            r["url"] = f"{r['url']}-{n + 1}"
    return rows


def main() -> None:
    out = Path(__file__).resolve().parent / "demo_feed.jsonl"
    rows = build()
    with out.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} stories to {out}")


if __name__ == "__main__":
    main()
